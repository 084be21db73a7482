"""A small analysis pipeline whose third step fails: the demo and several tests run it."""

import sys

import ckpt


@ckpt.ckpt
def load(n):
    return [float(i) for i in range(n)]


@ckpt.ckpt(active=False)
def normalise(values, scale=1.0):
    total = sum(values)
    return [scale * v / total for v in values]


@ckpt.ckpt(active=False)
def summarise(values, threshold):
    kept = [v for v in values if v > threshold]
    mean = sum(kept) / len(kept)  # fails when nothing passes the threshold
    return mean


def main(threshold):
    values = normalise(load(10))
    return summarise(values, threshold)


if __name__ == "__main__":
    print("mean:", main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.5))
