"""Calls three deep that fail at the bottom, for `cdip run --frame` (tests/test_frame_replay.py).

`python deep_call.py KIND N`: KIND is `pipeline` (a function, then a method),
`units` (class, static methods), `nested` (a closure), `lambda`, `library` (helpers.py), `stream` (a generator).
Each decorated step appends a line to `outer-ran` when it runs: the expensive
work a frame replay must not redo.
"""

import sys

import ckpt


def expensive_work():
    with open("outer-ran", "a") as marker:
        marker.write("ran\n")


@ckpt.ckpt(active=False)
def pipeline(n):
    expensive_work()
    rows = list(range(n))
    return summarise(rows, scale=2)


def summarise(rows, scale):
    total = sum(rows) * scale
    rows = rows[:2]
    return Stats(total).ratio(len(rows) - 2)


class Stats:
    def __init__(self, total):
        self.total = total

    def ratio(self, parts):
        return self.total / parts


@ckpt.ckpt(active=False)
def units(n):
    expensive_work()
    return Units.parse([str(n), "-1"])


class Units:
    @classmethod
    def parse(cls, texts):
        return [cls.check(int(text)) for text in texts]

    @staticmethod
    def check(value):
        if value < 0:
            raise ValueError(f"negative: {value}")
        return value


@ckpt.ckpt(active=False)
def nested(n):
    expensive_work()
    divisor = n - n

    def share(part):
        return part / divisor

    return share(n)


@ckpt.ckpt(active=False)
def with_lambda(n):
    expensive_work()
    return sorted(range(n), key=lambda item: 1 / (item - 1))


@ckpt.ckpt(active=False)
def stream(n):
    expensive_work()
    return sum(ratios(n))


def ratios(n):
    for item in range(n):
        yield 1 / (item - 1)


@ckpt.ckpt(active=False)
def library(n):
    expensive_work()
    import helpers

    return helpers.normalise(list(range(n)), total=n - n)


if __name__ == "__main__":
    kind, n = sys.argv[1], int(sys.argv[2])
    print({"pipeline": pipeline, "units": units, "nested": nested, "lambda": with_lambda,
           "library": library, "stream": stream}[kind](n))
