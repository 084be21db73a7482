"""A training step on a model and a batch, saved when called (tests/test_tensors.py)."""

import os
import sys

import torch

import ckpt

if os.environ.get("PRETEND_DEVICE"):  # a capture on a GPU, replayed where there is none
    import ckpt.tensors

    ckpt.tensors.device_name = lambda storage: os.environ["PRETEND_DEVICE"]


@ckpt.ckpt
def step(model, batch):
    out = model(batch)
    weight = next(model.parameters())
    print(f"out on {out.device}, weight on {weight.device}, sum {float(out.sum().detach()):.4f}")
    if sys.argv[1:] == ["fail"]:
        raise ValueError("loss is nan")
    return out


if __name__ == "__main__":
    torch.manual_seed(0)
    step(torch.nn.Linear(4, 2), torch.ones(3, 4))
