"""The pytest plugin: with `--ckpt`, every failing test becomes a checkpoint.

Registered through the `pytest11` entry point and inert unless `pytest --ckpt`
or `PYCKPT_PYTEST=1`. A failing test is saved under its node id, with its fixture
values as arguments, its locals at the error and the exception; `cdip run
<node id or test name>` then replays it with the test's current code.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Generator
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add `--ckpt`."""
    group = parser.getgroup("ckpt", "checkpoints of failing tests")
    group.addoption("--ckpt", action="store_true", default=False,
                    help="save a checkpoint of every failing test for `cdip run` "
                         "(also PYCKPT_PYTEST=1)")


def _enabled(config: pytest.Config) -> bool:
    from_environment = os.environ.get("PYCKPT_PYTEST", "").strip().lower()
    return bool(config.getoption("ckpt")) or from_environment not in ("", "0", "false", "no")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Save the test's call when its body (not a fixture) failed."""
    report = yield
    if (call.when == "call" and report.failed and call.excinfo is not None
            and isinstance(item, pytest.Function) and _enabled(item.config)):
        save_failed_test(item, call.excinfo.value)
    return report


def save_failed_test(item: pytest.Function, exc: BaseException) -> None:
    """A checkpoint of a failed test: its fixtures as arguments, named by node id.

    Like the decorator, it never raises into pytest (not even under ``-W error``):
    a save that fails is a warning in pytest's summary.
    """
    from .guest import save_error, warn
    from .target import Target

    try:
        function = item.function
        parameters = list(inspect.signature(function).parameters)
        args: tuple[Any, ...] = ()
        if item.instance is not None and parameters and parameters[0] == "self":
            args = (item.instance,)
        kwargs = {name: item.funcargs[name] for name in parameters if name in item.funcargs}
        target = Target(function, name=item.nodeid, keep=None)
    except Exception as error:
        warn(f"ckpt: could not save checkpoint {item.nodeid!r}: {type(error).__name__}: {error}")
        return
    save_error(target, None, args, kwargs, exc)
