"""A failed doctest as a call: `run_doctest` runs it again from today's source.

The pytest plugin saves a failing doctest as a call of `run_doctest` (its name,
module or file, and option flags), so `cdip run` replays it like any function:
it raises what the first failing example raised, or an AssertionError that shows
what was expected and what came, and returns once the doctest passes.
"""

from __future__ import annotations

import doctest
import importlib
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType


def failure_message(test: doctest.DocTest, example: doctest.Example, got: str,
                    optionflags: int = 0) -> str:
    """What an example's wrong output says: where, the example, what was expected and got."""
    line = (test.lineno or 0) + example.lineno + 1
    where = f"{test.filename}:{line}" if test.filename else f"line {line}"
    source = "".join(f"{'>>> ' if i == 0 else '... '}{text}\n"
                     for i, text in enumerate(example.source.rstrip("\n").split("\n")))
    difference = doctest.OutputChecker().output_difference(example, got, optionflags)
    return f"doctest {test.name} failed at {where}\n{source}{difference}"


def example_traceback(tb: TracebackType | None) -> TracebackType | None:
    """The part of an example's traceback from the example's own code on (doctest's cut off)."""
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith("<doctest "):
        tb = tb.tb_next
    return tb


def run_doctest(name: str, module: str | None = None, path: str | None = None,
                optionflags: int = 0) -> None:
    """Run the doctest `name` of `module` (or of the text file `path`) as it is now.

    Raises:
        LookupError: it is no longer there.
        AssertionError: an example's output is not what it expects.
        Exception: whatever an example raised, with the example's traceback.
    """
    test = _find(name, module, path)
    runner = doctest.DebugRunner(checker=_checker(), optionflags=optionflags)
    try:
        runner.run(test, clear_globs=False)
    except doctest.UnexpectedException as failure:
        _, raised, tb = failure.exc_info
        raise raised.with_traceback(example_traceback(tb)) from None
    except doctest.DocTestFailure as failure:
        raise AssertionError(failure_message(failure.test, failure.example, failure.got,
                                             optionflags)) from None


def _find(name: str, module: str | None, path: str | None) -> doctest.DocTest:
    if module is not None:
        imported = importlib.import_module(module)
        for test in doctest.DocTestFinder().find(imported, imported.__name__):
            if test.name == name:
                return test
        raise LookupError(f"{module} has no doctest {name} any more")
    if path is None or not os.path.isfile(path):
        raise LookupError(f"the doctest file {path} no longer exists")
    with open(path, encoding="utf-8") as stream:
        text = stream.read()
    return doctest.DocTestParser().get_doctest(text, {"__name__": "__main__"}, name, path, 0)


def _checker() -> doctest.OutputChecker:
    """The checker of pytest when it is there (its ALLOW_UNICODE, NUMBER flags), else doctest's."""
    try:
        from _pytest.doctest import _get_checker

        return _get_checker()
    except Exception:  # pytest gone, or its private helper renamed
        return doctest.OutputChecker()
