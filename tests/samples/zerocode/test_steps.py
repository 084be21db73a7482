"""A pytest test that fails in a helper."""


def helper(x):
    return x / 0


def test_helper():
    assert helper(2) == 1
