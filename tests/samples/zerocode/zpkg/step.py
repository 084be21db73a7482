"""Run as `python -m zpkg.step WORD`: a relative import, and a crash in a function of its own."""

import sys

from .util import halve


def step(word, times=2):
    return halve(len(word) - len(word)) * times / (len(word) - 2)


if __name__ == "__main__":
    print("step of", sys.argv[1:], "spec", __spec__.name)
    print(step(sys.argv[1]))
