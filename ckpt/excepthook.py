"""Where an exception that nobody handles is caught, so that its frames are saved (`stack`).

`install_excepthook()` hooks them all, from inside a program: `sys.excepthook` (the
main thread), `threading.excepthook` (other threads), IPython's and Jupyter's cell
errors (its `set_custom_exc`), and unittest's results: unittest catches a failing
test's exception itself, so what it reports to `TestResult.addError`, `addFailure`
and `addSubTest` is saved (the first failure of each test), and listed when the
interpreter exits. `python -m ckpt run` hooks unittest the same way.

Each hook shows the error first, as it would without ckpt, then says what was saved.
"""

from __future__ import annotations

import sys

from .stack import print_report, save_frames

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from types import ModuleType, TracebackType
    from typing import Any, Callable

    from .capture import Saved


def install_excepthook() -> None:
    """Save every frame of your own code on an exception nobody handles, one checkpoint each.

    The same capture as ``python -m ckpt run script.py``, from inside a program,
    IPython or a notebook: hooks `sys.excepthook`, `threading.excepthook`, IPython's
    cell errors and unittest's failures. Calling it again changes nothing.
    """
    previous = sys.excepthook
    if getattr(previous, "__ckpt_previous__", None) is None:
        sys.excepthook = _main_thread_hook(previous)
    import threading

    _hook_threads(threading)
    shell = _ipython()
    if shell is not None and not hasattr(shell, _THEIR_CELL_HANDLER):
        _hook_cells(shell)
    watch_unittest()


def uninstall_excepthook() -> None:
    """Undo `install_excepthook` (unittest's results stay hooked, as they are imported)."""
    import threading

    for owner, attribute in ((sys, "excepthook"), (threading, "excepthook")):
        previous = getattr(getattr(owner, attribute), "__ckpt_previous__", None)
        if previous is not None:
            setattr(owner, attribute, previous)
    shell = _ipython()
    if shell is not None and hasattr(shell, _THEIR_CELL_HANDLER):
        kinds, handler = getattr(shell, _THEIR_CELL_HANDLER)
        delattr(shell, _THEIR_CELL_HANDLER)
        shell.custom_exceptions, shell.CustomTB = kinds, handler  # theirs, as it was


def _main_thread_hook(previous: Callable[..., Any]) -> Callable[..., Any]:
    def ckpt_excepthook(kind: type[BaseException], value: BaseException,
                        tb: TracebackType | None) -> None:
        saved = save_frames(value, tb) if isinstance(value, Exception) else []
        previous(kind, value, tb)
        print_report(saved)

    ckpt_excepthook.__ckpt_previous__ = previous  # type: ignore[attr-defined]
    return ckpt_excepthook


def watch_threads() -> None:
    """Save the frames of an error that ends a thread: from now, or once threading is imported.

    `ckpt run` does not import threading for the program: gevent, say, must patch it first.
    """
    _after_import("threading", _hook_threads)


def _hook_threads(threading: Any) -> None:
    if getattr(threading.excepthook, "__ckpt_previous__", None) is None:
        threading.excepthook = _thread_hook(threading.excepthook)


def _thread_hook(previous: Callable[..., Any]) -> Callable[..., Any]:
    def ckpt_threading_excepthook(args: Any) -> None:
        value = args.exc_value
        saved = save_frames(value, args.exc_traceback) if isinstance(value, Exception) else []
        previous(args)
        name = getattr(args.thread, "name", None)
        print_report(saved, f"this error in thread {name}" if name else "this error")

    ckpt_threading_excepthook.__ckpt_previous__ = previous  # type: ignore[attr-defined]
    return ckpt_threading_excepthook


def _ipython() -> Any:
    """The running IPython shell (a terminal's or a notebook kernel's), or None."""
    module = sys.modules.get("IPython")
    get = getattr(module, "get_ipython", None)
    return get() if get is not None else None


# An exception `%ckpt here` let through: the cell shows it, nothing saves it again.
not_saved: list[BaseException] = []
# On the shell: the custom exception handler it had before ours (`set_custom_exc`).
_THEIR_CELL_HANDLER = "_ckpt_their_custom_exc"


def _hook_cells(shell: Any) -> None:
    """Handle the errors of cells (IPython's `set_custom_exc`), after a handler they had."""
    kinds, handler = tuple(shell.custom_exceptions), shell.CustomTB
    setattr(shell, _THEIR_CELL_HANDLER, (kinds, handler))

    def cell_error(shell: Any, kind: type[BaseException], value: BaseException,
                   tb: TracebackType | None, tb_offset: int | None = None) -> Any:
        """Their handler's, or IPython's usual traceback; then the frames are saved."""
        shown = None
        if kinds and issubclass(kind, kinds):
            shown = handler(kind, value, tb, tb_offset=tb_offset)
        else:
            shell.showtraceback((kind, value, tb), tb_offset=tb_offset,
                                running_compiled_code=True)
        if any(value is seen for seen in not_saved):
            not_saved.clear()
        elif isinstance(value, Exception):
            print_report(save_frames(value, tb))
        return shown

    shell.set_custom_exc(tuple(dict.fromkeys((Exception, *kinds))), cell_error)


# -- unittest -------------------------------------------------------------------------------

_failed_tests: set[str] = set()
_saved_tests: list[tuple[str, Saved]] = []


def watch_unittest() -> None:
    """Save the frames of every failing unittest test (its first failure): now, or once imported."""
    _after_import("unittest.result", _hook_results)


def _after_import(name: str, then: Callable[[ModuleType], None]) -> None:
    """`then(module)` now if the module `name` is imported, else once it is (once)."""
    module = sys.modules.get(name)
    if module is not None:
        then(module)
    elif not any(isinstance(finder, _AfterImport) and finder.name == name
                 for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, then))


def _hook_results(result: ModuleType) -> None:
    cls = result.TestResult
    if getattr(cls, "__ckpt_hooked__", False):
        return
    cls.__ckpt_hooked__ = True
    add_error, add_failure, add_subtest = cls.addError, cls.addFailure, cls.addSubTest

    def addError(self: Any, test: Any, err: Any) -> None:
        add_error(self, test, err)
        _test_failed(test, err)

    def addFailure(self: Any, test: Any, err: Any) -> None:
        add_failure(self, test, err)
        _test_failed(test, err)

    def addSubTest(self: Any, test: Any, subtest: Any, err: Any) -> None:
        add_subtest(self, test, subtest, err)
        if err is not None:
            _test_failed(test, err)

    cls.addError, cls.addFailure, cls.addSubTest = addError, addFailure, addSubTest
    import atexit

    atexit.register(report_tests)


def _test_failed(test: Any, err: Any) -> None:
    try:
        key = str(test.id())
        value = err[1] if isinstance(err, tuple) and len(err) == 3 else None
        if key in _failed_tests or not isinstance(value, Exception):
            return
        _failed_tests.add(key)
        _saved_tests.extend(save_frames(value, err[2]))
    except Exception:  # noqa: S110 (never our error in their test run)
        pass


def report_tests() -> None:
    """Say which failing tests were saved (once: at the end of `ckpt run`, or at exit)."""
    saved = list(_saved_tests)
    _saved_tests.clear()
    print_report(saved, "failing tests")


class _AfterImport:
    """A meta path finder that runs `then(module)` once the module `name` has been imported.

    So a program that never imports unittest never pays for importing it.
    """

    def __init__(self, name: str, then: Callable[[ModuleType], None]) -> None:
        self.name, self.then = name, then

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        """The usual spec of `name`, with its loader told to call `then` after it runs."""
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path, target)
        loader = getattr(spec, "loader", None)
        execute = getattr(loader, "exec_module", None)
        if spec is None or execute is None:
            return spec
        then = self.then

        def exec_module(module: ModuleType) -> None:
            execute(module)
            try:
                then(module)
            except Exception:  # noqa: S110 (their import must succeed whatever we do)
                pass

        loader.exec_module = exec_module  # type: ignore[union-attr]  # this module's own loader
        return spec
