"""Run as `python -m analysis.run`: relative imports must work on replay too."""

import sys

import ckpt

from .helpers import scale


@ckpt.ckpt(active=False)
def report(values, factor):
    scaled = scale(values, factor)
    return scaled[10]  # IndexError for short inputs


if __name__ == "__main__":
    print(report([1, 2, 3], int(sys.argv[1])))
