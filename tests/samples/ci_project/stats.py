"""The code under test: a small statistics helper with a bug in `spread`."""


def mean(values):
    return sum(values) / len(values)


def spread(values):
    return max(values) - min(values) + 1  # bug: off by one
