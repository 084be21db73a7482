import threading

import pytest


@pytest.fixture
def samples():
    return [3.0, 5.0, 10.0]


@pytest.fixture
def lock():
    return threading.Lock()  # cannot be pickled: replay says so
