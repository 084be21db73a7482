"""A decorated function that raises, called while the interpreter shuts down.

Usage: shutdown.py atexit|del [saved-before]
"""

import atexit
import sys

import ckpt


@ckpt.ckpt(active=False)
def fail(where):
    raise ValueError(f"theirs from {where}")


class Finalized:
    def __del__(self):
        fail("__del__")


def at_exit():
    fail("atexit")


if "saved-before" in sys.argv:
    try:
        fail("early")
    except ValueError:
        pass
if sys.argv[1] == "atexit":
    atexit.register(at_exit)
else:
    held_until_shutdown = Finalized()
print("main done", flush=True)
