"""A user's own module called `runner`: replay must import this one, not ours."""


def double(x):
    return 2 * x
