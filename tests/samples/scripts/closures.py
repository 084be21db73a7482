"""Closures: one over a numpy array, one over a lock (which cannot be pickled)."""

import sys
import threading

import numpy

import ckpt


def make_scaler(weights):
    @ckpt.ckpt(active=False)
    def scale(x):
        total = float((weights * x).sum())
        if total > 10:
            raise ValueError(f"too big: {total}")
        return total

    return scale


def make_guarded(lock):
    @ckpt.ckpt(active=False)
    def guarded(x):
        with lock:
            raise ValueError(x)

    return guarded


if __name__ == "__main__":
    if sys.argv[1] == "array":
        make_scaler(numpy.arange(5.0))(2)
    else:
        make_guarded(threading.Lock())(1)
