"""A deadline (SIGALRM whose handler raises) or Ctrl-C that lands in the middle of a save.

Usage: signals.py alarm-call|alarm-error|sigint-call|sigint-error
Each save is made slow by an argument whose pickling sleeps: the signal arrives
while ckpt is saving, never while the user's own code runs.
"""

import os
import signal
import sys
import threading
import time

import ckpt

mode = sys.argv[1]
ran = []


class SlowToPickle:
    """Pickling it takes a second: the signal lands inside ckpt's save."""

    def __reduce__(self):
        time.sleep(1.0)
        return (SlowToPickle, ())


def on_alarm(signum, frame):
    raise TimeoutError("deadline")


@ckpt.ckpt
def at_call(value):
    ran.append("at_call")
    return 1


@ckpt.ckpt(active=False)
def at_error(value):
    ran.append("at_error")
    raise ValueError("theirs")


def arm():
    if mode.startswith("alarm"):
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, 0.2)
    else:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()


arm()
started = time.monotonic()
try:
    if mode.endswith("call"):
        at_call(SlowToPickle())
    else:
        at_error(SlowToPickle())
    print("not interrupted")
except (TimeoutError, KeyboardInterrupt) as exc:
    context = type(exc.__context__).__name__ if exc.__context__ is not None else None
    print(f"interrupted by {type(exc).__name__} context={context}")
except ValueError:
    print("their ValueError alone")
print(f"ran={ran} seconds={time.monotonic() - started:.1f}")
for entry in ckpt.checkpoints():
    print(f"checkpoint {entry.name} {entry.trigger} problem={entry.problem}")
store = os.environ["PYCKPT_DIR"]
print("files", sorted(os.listdir(store)) if os.path.isdir(store) else [])
