"""A save that fails (the store is a file) under `python -W error`."""

import ckpt


@ckpt.ckpt
def step(x):
    if x < 0:
        raise ValueError("theirs")
    return x * 2


print("returned", step(2), flush=True)
step(-1)
