"""Its own sys.excepthook ends the process with status 7."""
import sys


def hook(kind, value, tb):
    print("handled", kind.__name__, file=sys.stderr)
    sys.exit(7)


sys.excepthook = hook


def fail(value):
    raise ValueError(value)


fail("x")
