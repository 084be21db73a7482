"""A step that fails until it is fixed: the sample of `cdip run --watch` and of restart."""

import ckpt
from offsets import offset


@ckpt.ckpt
def ratio(total, count):
    share = count - offset()
    return total / share


if __name__ == "__main__":
    print(ratio(10, 1))
