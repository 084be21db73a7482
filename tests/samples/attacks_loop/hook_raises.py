"""Its own sys.excepthook raises: Python shows both errors."""
import sys


def hook(kind, value, tb):
    raise RuntimeError("the hook broke")


sys.excepthook = hook


def fail(value):
    raise ValueError(value)


fail("x")
