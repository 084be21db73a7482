"""A step that fails on a worker, saving into the store PYCKPT_DIR names (a URL in tests)."""

import sys

import numpy as np

import ckpt


@ckpt.ckpt(active=False)
def scale(batch, factor):
    total = float(batch.sum())
    return total / factor  # fails for factor 0


if __name__ == "__main__":
    batch = np.arange(1 << 19, dtype=np.float64)  # 4 MiB: stored as a blob
    print("result:", scale(batch, float(sys.argv[1]) if len(sys.argv) > 1 else 0.0))
