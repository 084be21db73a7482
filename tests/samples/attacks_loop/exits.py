"""sys.exit with a code, a string, None or an object, from a function; or from a finally."""
import sys


def leave(how):
    codes = {"code": 5, "string": "bye now", "none": None, "list": [1, 2]}
    if how == "finally":
        try:
            print(1 / 0)
        finally:
            sys.exit(3)
    sys.exit(codes[how])


leave(sys.argv[1])
