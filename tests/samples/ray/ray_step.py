"""A step run as a Ray task on a worker process (tests/test_ray.py)."""

import ckpt


@ckpt.ckpt
def rescale(batch, scale):
    """Divides by the batch's sum: a batch that sums to zero fails on its worker."""
    total = sum(batch)
    return [value / total * scale for value in batch]
