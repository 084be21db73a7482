import pytest

import stats


def test_mean(samples):
    assert stats.mean(samples) == 6.0


@pytest.mark.parametrize(("values", "expected"), [([1, 2], 1), ([5, 5], 0)])
def test_spread(values, expected):
    width = stats.spread(values)
    assert width == expected


class TestSpread:
    def test_of_samples(self, samples):
        assert stats.spread(samples) == 7.0


def test_with_a_lock(lock, samples):
    with lock:
        assert stats.spread(samples) == 7.0
