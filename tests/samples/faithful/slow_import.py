"""A module whose import takes long when SLOW_IMPORT says so (tests press Ctrl-C then)."""

import os
import time

import ckpt

print("importing", flush=True)
time.sleep(float(os.environ.get("SLOW_IMPORT", "0")))


@ckpt.ckpt
def quick(x):
    return x + 1


if __name__ == "__main__":
    quick(1)
