"""A small user project whose module names could clash with ckpt's own."""

import sys
from pathlib import Path

import ckpt
from runner import double


@ckpt.ckpt(active=False)
def compute(x):
    y = double(x)
    if y > 10:
        raise ValueError(f"too big: {y}")
    return y


class Report:
    def __init__(self, title):
        self.title = title

    @ckpt.ckpt
    def render(self, width):
        line = self.title.center(width)
        return line


if __name__ == "__main__":
    Path("main-block-ran").write_text("yes")
    print(Report("totals").render(20))
    compute(int(sys.argv[1]))
