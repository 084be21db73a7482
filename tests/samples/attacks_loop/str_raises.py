"""An exception whose __str__ raises."""


class Odd(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")


def fail(value):
    raise Odd(value)


fail(1)
