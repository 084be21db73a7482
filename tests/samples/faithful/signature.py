"""A step whose signature changes after capture (tests edit the def line)."""

import ckpt


@ckpt.ckpt
def compute(a, b, scale=1.0):
    return (a + b) * scale


if __name__ == "__main__":
    print(compute(1, 0, scale=2.0))
