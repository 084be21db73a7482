"""os._exit from a function: no atexit handler runs, the status is kept."""
import atexit
import os

atexit.register(print, "atexit ran")


def leave():
    print("leaving", flush=True)
    os._exit(4)


leave()
