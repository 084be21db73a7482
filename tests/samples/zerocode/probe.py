"""Prints what a program sees of how it was started, then exits with status 3."""

import sys

facts = {
    "argv": sys.argv,
    "path0": sys.path[0],
    "name": __name__,
    "file": __file__,
    "spec": getattr(__spec__, "name", None),
    "package": __package__,
    "loader": type(__loader__).__name__,
    "main_is_us": sys.modules["__main__"].__dict__ is globals(),
    "globals": sorted(name for name in globals() if name.startswith("__")),
}
print(repr(facts))
print("to stderr", file=sys.stderr)
sys.exit(3)
