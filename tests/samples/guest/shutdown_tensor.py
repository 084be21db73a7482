"""A large device tensor saved from an atexit handler (CPU storages take the GPU's path).

Usage: shutdown_tensor.py [saved-before]
"""

import atexit
import sys

import torch

import ckpt
import ckpt.tensors

ckpt.tensors._streams = lambda flat: True  # streamed in chunks, as a CUDA storage is
batch = torch.ones(5 << 20)  # 20 MiB: three chunks, so a pool writes them


@ckpt.ckpt(active=False)
def step(batch, where):
    raise ValueError(f"theirs from {where}")


def at_exit():
    step(batch, "atexit")


if "saved-before" in sys.argv:  # its blob is there: the atexit save only hashes it
    try:
        step(batch, "early")
    except ValueError:
        pass
atexit.register(at_exit)
print("main done", flush=True)
