"""Closures: over a numpy array, over a lock (which cannot be pickled), over a module's object."""

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


def make_checker(limit):
    @ckpt.ckpt(active=False)
    def check(x):
        if x > limit.value:
            raise ValueError(f"{x} is over {limit.value}")

    return check


if __name__ == "__main__":
    if sys.argv[1] == "array":
        make_scaler(numpy.arange(5.0))(2)
    elif sys.argv[1] == "lock":
        make_guarded(threading.Lock())(1)
    else:
        import closure_helper

        make_checker(closure_helper.Limit(3))(5)
