"""Steps run as Dask tasks on worker processes (tests/test_cluster.py)."""

import os
import signal

import ckpt


@ckpt.ckpt
def normalise(batch, scale):
    """Divides by the batch's sum: a batch that sums to zero fails on its worker."""
    total = sum(batch)
    return [value / total * scale for value in batch]


class DiesWhenSaved:
    """A local whose pickling kills its process, as the OOM killer would mid-save."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)


@ckpt.ckpt(active=False)
def die_while_saving(n):
    """Fails; its worker is killed while the error is being saved."""
    doomed = DiesWhenSaved()
    raise RuntimeError(f"step {n} failed with {doomed!r}")
