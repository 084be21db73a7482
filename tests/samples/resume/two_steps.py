"""A decorated step that calls another: replaying the outer one must not save the inner one."""

import ckpt


@ckpt.ckpt(active=False)
def inner(x):
    return 1 / x


@ckpt.ckpt(active=False)
def outer(x):
    return inner(x)


if __name__ == "__main__":
    outer(0)
