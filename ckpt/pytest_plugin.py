"""The pytest plugin: with `--ckpt`, every failing test becomes a checkpoint.

Registered through the `pytest11` entry point and inert unless `pytest --ckpt`
or `PYCKPT_PYTEST=1`. A failing test is saved under its node id, with its fixture
values as arguments, its locals at the error and the exception; `cdip run
<node id or test name>` then replays it with the test's current code. pytest's
own fixtures (`capsys`, `tmp_path`, `monkeypatch`...) are saved as markers and
made afresh on replay; a failing doctest is saved as a call of
`ckpt.doctests.run_doctest`; a unittest `TestCase` as its test method on the
instance. At the end, the terminal summary lists what was saved and how to replay it.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Generator
from typing import Any

import pytest

# The checkpoint a failing test was saved as, on its report: {"id", "name", "store"}.
# An attribute of the report travels with it from a pytest-xdist worker to the
# controller, which prints the summary.
REPORT_ATTRIBUTE = "ckpt_checkpoint"
_saved_key = pytest.StashKey[bool]()  # the item's first failure is saved (subtests fail often)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add `--ckpt`."""
    group = parser.getgroup("ckpt", "checkpoints of failing tests")
    group.addoption("--ckpt", action="store_true", default=False,
                    help="save a checkpoint of every failing test for `cdip run` "
                         "(also PYCKPT_PYTEST=1)")


def _enabled(config: pytest.Config) -> bool:
    from_environment = os.environ.get("PYCKPT_PYTEST", "").strip().lower()
    return bool(config.getoption("ckpt")) or from_environment not in ("", "0", "false", "no")


def pytest_configure(config: pytest.Config) -> None:
    """With the plugin on, collect what is saved for the terminal summary."""
    if _enabled(config):
        config.pluginmanager.register(Summary(), "ckpt-summary")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Save the test's call when its body (not a fixture) failed."""
    report = yield
    if (call.when == "call" and report.failed and call.excinfo is not None
            and _enabled(item.config) and not item.stash.get(_saved_key, False)):
        item.stash[_saved_key] = True
        saved = save_failed_item(item, call.excinfo.value)
        if saved is not None:
            setattr(report, REPORT_ATTRIBUTE, saved)
    return report


class Summary:
    """The checkpoints saved in this run (by this process or its xdist workers), for the end."""

    def __init__(self) -> None:
        self.saved: dict[str, dict[str, str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Note a report's checkpoint."""
        saved = getattr(report, REPORT_ATTRIBUTE, None)
        if isinstance(saved, dict) and isinstance(saved.get("id"), str):
            self.saved.setdefault(saved["id"], saved)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Say how many were saved, where, and the command that replays each."""
        if not self.saved:
            return
        for line in summary_lines(list(self.saved.values())):
            terminalreporter.write_line(line) if line else terminalreporter.write_sep("=", "ckpt")


def summary_lines(saved: list[dict[str, str]]) -> list[str]:
    """The summary's lines ('' stands for its heading): count, store, one command each."""
    import shlex

    stores = sorted({checkpoint["store"] for checkpoint in saved})
    lines = ["", f"{len(saved)} failing test(s) saved as checkpoints in {', '.join(stores)}",
             "replay one with today's code (`cdip info` lists them):"]
    lines += [f"  cdip run {shlex.quote(checkpoint['name'])}" for checkpoint in saved]
    return lines


def save_failed_item(item: pytest.Item, exc: BaseException) -> dict[str, str] | None:
    """Save a failed test, unittest method or doctest; what was saved, or None.

    Never raises into pytest: whatever goes wrong is a warning in its summary.
    """
    try:
        if isinstance(item, pytest.Function):
            return save_failed_test(item, exc)
        if hasattr(getattr(item, "dtest", None), "examples"):
            return save_failed_doctest(item, exc)
    except Exception as error:
        from .guest import warn

        warn(f"ckpt: could not save checkpoint {item.nodeid!r}: {type(error).__name__}: {error}")
    return None


def save_failed_test(item: pytest.Function, exc: BaseException) -> dict[str, str] | None:
    """A checkpoint of a failed test: its fixtures as arguments, named by node id.

    Like the decorator, it never raises into pytest (not even under ``-W error``):
    a save that fails is a warning in pytest's summary.
    """
    from .guest import save_error_now, warn
    from .stack import detached_test_case
    from .target import Target

    try:
        function = item.function
        parameters = list(inspect.signature(function).parameters)
        args: tuple[Any, ...] = ()
        if item.instance is not None and parameters and parameters[0] == "self":
            args = (detached_test_case(item.instance),)
        kwargs = {name: _argument(item, name) for name in parameters if name in item.funcargs}
        target = Target(function, name=item.nodeid, keep=None)
    except Exception as error:
        warn(f"ckpt: could not save checkpoint {item.nodeid!r}: {type(error).__name__}: {error}")
        return None
    return _described(save_error_now(target, None, args, kwargs, exc), item.nodeid)


def _argument(item: pytest.Function, name: str) -> Any:
    """A fixture's value as saved: pytest's own fixtures as markers to make afresh."""
    from .fixtures import RECREATED, Fixture
    from .values import type_name

    value = item.funcargs[name]
    if name not in RECREATED or not _pytests_own(item, name):
        return value
    facts = {}
    if name == "request":
        facts = {"nodeid": item.nodeid, "name": item.name,
                 "fixturenames": list(item.fixturenames),
                 "keywords": sorted(str(keyword) for keyword in item.keywords)}
    return Fixture(name, type_name(value), facts)


def _pytests_own(item: pytest.Function, name: str) -> bool:
    """Whether the fixture `name` the test got is pytest's own (not a project's override)."""
    if name == "request":
        return True
    try:
        definitions = item._fixtureinfo.name2fixturedefs.get(name) or ()
        module = getattr(definitions[-1].func, "__module__", "") or ""
    except (AttributeError, IndexError):
        return False
    return module.startswith("_pytest.")


def save_failed_doctest(item: pytest.Item, exc: BaseException) -> dict[str, str] | None:
    """A failed doctest, saved as a call of `run_doctest` that replays it from today's source.

    An example that raised is saved with its exception and the frames from the
    example down; one whose output differs, as the AssertionError a replay raises.
    """
    import doctest

    from .doctests import example_traceback, failure_message, run_doctest
    from .guest import save_error_now
    from .target import Target

    dtest: doctest.DocTest = getattr(item, "dtest")  # noqa: B009 (checked by the caller)
    failures = getattr(exc, "failures", None)  # pytest's MultipleDoctestFailures
    failure = failures[0] if failures else exc
    optionflags = int(getattr(getattr(item, "runner", None), "optionflags", 0))
    kwargs = {"name": dtest.name, **_doctest_source(dtest), "optionflags": optionflags}
    target = Target(run_doctest, name=item.nodeid, keep=None)
    if isinstance(failure, doctest.UnexpectedException):
        raised, tb = failure.exc_info[1], failure.exc_info[2]
        original = raised.__traceback__
        raised.__traceback__ = example_traceback(tb)  # doctest's own frames are not theirs
        try:
            return _described(save_error_now(target, None, (), kwargs, raised), item.nodeid)
        finally:
            raised.__traceback__ = original
    if isinstance(failure, doctest.DocTestFailure):
        error = AssertionError(failure_message(failure.test, failure.example, failure.got,
                                               optionflags))
        return _described(save_error_now(target, None, (), kwargs, error), item.nodeid)
    return _described(save_error_now(target, None, (), kwargs, failure), item.nodeid)


def _doctest_source(dtest: Any) -> dict[str, str | None]:
    """Where the doctest is found again: its module's name, or its text file's path.

    A path under the working directory is kept relative to it, so that a replay from
    another checkout (the CI's on a laptop) finds the file in its own tree.
    """
    module = dtest.globs.get("__name__")
    if module and module != "__main__" and (dtest.filename or "").endswith(".py"):
        return {"module": module, "path": None}
    path = os.path.abspath(dtest.filename or "")
    here = os.getcwd()
    if path.startswith(here + os.sep):
        path = os.path.relpath(path, here)
    return {"module": None, "path": path}


def _described(saved: Any, name: str) -> dict[str, str] | None:
    if saved is None:
        return None
    return {"id": saved.id, "name": name, "store": saved.store.path}
