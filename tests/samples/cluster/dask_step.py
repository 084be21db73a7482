"""A step run as a Dask task on a worker process (tests/test_cluster.py).

It divides by the batch's sum: a batch that sums to zero fails on its worker.
"""

import ckpt


@ckpt.ckpt
def normalise(batch, scale):
    total = sum(batch)
    return [value / total * scale for value in batch]
