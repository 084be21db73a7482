"""sys.excepthook set to None: Python says so and shows the error."""
import sys

sys.excepthook = None


def fail(value):
    raise ValueError(value)


fail("x")
