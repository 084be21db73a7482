"""No sys.stderr at all (pythonw, a daemon): nothing may go to stdout instead."""
import sys

print("out")
sys.stderr = None


def fail(value):
    raise ValueError(value)


fail("x")
