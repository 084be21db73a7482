"""Every frame of the user's own code on an exception's traceback, saved as its own checkpoint.

No decorator needed: `python -m ckpt run` (`zerocode`), `ckpt.install_excepthook()`
and `%load_ext ckpt` (`excepthook`) call `save_frames` with an uncaught exception, and
with a failing unittest test.

Each checkpoint re-calls one frame's function: it is filed under the function's
``__qualname__`` (as the decorator files it), its arguments are the values its
parameters held *at the error* (bound by name from the frame's locals), and its error
part holds the exception and the locals of that frame and every one below it. Frames
of the standard library, of installed packages and of ckpt are not the user's and are
skipped; so are frames with no function to call again: a module's top level
(``<module>``), comprehensions and generator expressions. A function on the stack
several times (a recursion) is saved once, at its innermost frame. A frame of a
function decorated with `@ckpt.ckpt` is skipped when the decorator saved it already.

Imported only when there is something to save (or a hook to install): `import ckpt`
never pays for it.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType, FrameType, TracebackType
    from typing import Any, Callable

    from .capture import Saved

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_STDLIB = os.path.dirname(os.path.abspath(os.__file__)) + os.sep
_DECORATOR_FILE = _PACKAGE + "decorator.py"


def is_user_file(filename: str) -> bool:
    """Whether code from `filename` is the user's: not the standard library's, a package's or ours.

    Code typed into a REPL, IPython or a notebook cell (``<stdin>``,
    ``<ipython-input-1-…>``, ``/tmp/ipykernel_…/….py``) is the user's; frozen modules are not.
    """
    if filename.startswith("<"):
        return not filename.startswith("<frozen ")
    path = os.path.abspath(filename)
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not (path.startswith(_STDLIB) or path.startswith(_PACKAGE))


def _saved_by_decorator(caller: TracebackType | None, code: CodeType) -> bool:
    """Whether `caller` is `@ckpt.ckpt`'s wrapper of `code`'s function, and saved this error."""
    if caller is None or caller.tb_frame.f_code.co_filename != _DECORATOR_FILE:
        return False
    local = caller.tb_frame.f_locals
    function = getattr(local.get("target"), "function", None)
    return getattr(function, "__code__", None) is code and bool(local.get("error_saved"))


def frames_to_save(tb: TracebackType | None) -> list[TracebackType]:
    """The traceback entries to save, outermost first: one per user function, its innermost."""
    innermost: dict[CodeType, int] = {}
    entries: list[TracebackType] = []
    caller = None
    while tb is not None:
        code = tb.tb_frame.f_code
        if (is_user_file(code.co_filename) and not code.co_name.startswith("<")
                and not _saved_by_decorator(caller, code)):
            innermost[code] = len(entries)
        entries.append(tb)
        caller, tb = tb, tb.tb_next
    return [entries[index] for index in sorted(innermost.values())]


def _qualname(code: CodeType) -> str:
    return str(getattr(code, "co_qualname", code.co_name))  # co_qualname: Python 3.11+


def _with_code(found: Any, code: CodeType) -> Callable[..., Any] | None:
    """`found`, or the function under its decorators, when its code is `code`."""
    for _ in range(16):  # a chain of decorators, not a cycle of __wrapped__
        if getattr(found, "__code__", None) is code:
            return found  # type: ignore[no-any-return]
        target = getattr(found, "__ckpt_target__", None)
        inner = getattr(found, "__func__", None) or getattr(target, "function", None)
        found = inner if inner is not None else getattr(found, "__wrapped__", None)
        if found is None:
            return None
    return None


def function_of(frame: FrameType) -> Callable[..., Any] | None:
    """The function whose call `frame` is: by its qualname in its module, else by its code.

    A nested function or a closure has no name to find it by; the garbage collector
    knows the function objects of its code, and the one whose closure holds the
    frame's values is this frame's.
    """
    code = frame.f_code
    qualname = _qualname(code)
    if "<locals>" not in qualname:
        parts = qualname.split(".")
        found = _with_code(frame.f_globals.get(parts[0]), code)
        if found is None and len(parts) > 1:
            owner: Any = frame.f_globals.get(parts[0])
            for part in parts[1:]:
                parent = owner
                owner = vars(owner).get(part) if hasattr(owner, "__dict__") else None
            found = _with_code(owner, code)
            if found is not None and isinstance(owner, classmethod) and isinstance(parent, type):
                # bound to its class, as a replay finds it: `cls` is no argument to save
                found = owner.__get__(None, parent)
        if found is not None:
            return found
    import gc

    candidates = [f for f in gc.get_referrers(code) if getattr(f, "__code__", None) is code]
    for candidate in candidates:
        cells = getattr(candidate, "__closure__", None) or ()
        free = dict(zip(code.co_freevars, cells))
        if all(_cell_holds(cell, frame.f_locals, name) for name, cell in free.items()):
            return candidate  # type: ignore[no-any-return]
    return None


def _cell_holds(cell: Any, local: dict[str, Any], name: str) -> bool:
    try:
        return cell.cell_contents is local.get(name)
    except ValueError:  # an empty cell
        return name not in local


def call_from_locals(function: Callable[..., Any],
                     local: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments to call `function` with: its parameters' values in `local`, by name.

    A parameter the frame deleted (``del name``) before the error is a placeholder
    that says so.
    """
    import inspect

    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, parameter in inspect.signature(function).parameters.items():
        value = local[name] if name in local else _deleted(name)
        kind = parameter.kind
        if kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            args.append(detached_test_case(value) if not args else value)
        elif kind == parameter.VAR_POSITIONAL:
            args.extend(value if isinstance(value, tuple) else ())
        elif kind == parameter.KEYWORD_ONLY:
            kwargs[name] = value
        elif isinstance(value, dict):
            kwargs.update(value)
    return tuple(args), kwargs


def _deleted(name: str) -> Any:
    from .values import Unpicklable

    return Unpicklable("<deleted>", name, "the function deleted it (del) before the error")


def detached_test_case(value: Any) -> Any:
    """A unittest `TestCase` (a test's `self`) without the run in progress.

    Its `_outcome` holds the runner's result and streams, which cannot be saved;
    outside a run, `subTest()` lets the first failure through, which is what a
    replay of the method then stops at.
    """
    unittest = sys.modules.get("unittest")
    if unittest is None or not isinstance(value, unittest.TestCase):
        return value
    import copy

    clone = copy.copy(value)
    clone._outcome = None
    clone._subtest = None
    vars(clone).pop(getattr(value, "_testMethodName", ""), None)  # a runner's own wrapper
    return clone


def save_frames(exc: BaseException,
                tb: TracebackType | None = None) -> list[tuple[str, Saved]]:
    """Save one checkpoint per user frame on `exc`'s traceback (or `tb`); (name, saved) each.

    Outermost first. Never raises: a frame that cannot be saved is a `CkptWarning`,
    as with the decorator. Nothing is saved with capture disabled (`PYCKPT_DISABLE=1`).
    """
    try:
        from .decorator import _can_save, is_enabled

        # _can_save: the first save imports threading, which fails while their
        # sys.excepthook is None; it says nothing then, as for the decorator
        if not is_enabled() or not _can_save():
            return []
        entries = frames_to_save(tb if tb is not None else exc.__traceback__)
        saved = []
        for entry in entries:
            done = _save_frame(exc, entry)
            if done is not None:
                saved.append(done)
    except Exception:  # never our error in their program
        return []
    return saved


def _save_frame(exc: BaseException, entry: TracebackType) -> tuple[str, Saved] | None:
    from .capture import FrameTarget
    from .guest import save_error_now, warn

    frame = entry.tb_frame
    original = exc.__traceback__
    exc.__traceback__ = entry  # the checkpoint's traceback and frames start at its own frame
    try:
        function = function_of(frame)
        if function is None:
            warn(f"ckpt: could not save a checkpoint of {_qualname(frame.f_code)}: its function "
                 "is not found (it has no name in its module, and no function object holds "
                 "its code)")
            return None
        args, kwargs = call_from_locals(function, frame.f_locals)
        target = FrameTarget(function, None, None)
        done = save_error_now(target, None, args, kwargs, exc)
        return None if done is None else (target.name, done)
    except Exception as error:  # their objects' __getattr__, a signature that cannot be read
        warn(f"ckpt: could not save a checkpoint of {_qualname(frame.f_code)}: "
             f"{type(error).__name__}: {error}")
        return None
    finally:
        exc.__traceback__ = original


def report(saved: list[tuple[str, Saved]], what: str = "this error") -> list[str]:
    """The lines that say what was saved and how to replay each (none when nothing was)."""
    if not saved:
        return []
    stores = sorted({item.store.path for _, item in saved})
    lines = [f"ckpt: saved {len(saved)} checkpoint(s) of {what} in {', '.join(stores)}: one "
             "per function of yours on the stack, outermost first, each with the values its "
             "parameters had at the error; replay one with today's code:"]
    lines += [f"  cdip run {_replayable(name)}    # id {item.id}" for name, item in saved]
    return lines


def _replayable(name: str) -> str:
    """How `cdip run` names the checkpoint: its name, after ``--`` if it reads as a program."""
    import shlex

    from .zerocode import requested

    return f"-- {shlex.quote(name)}" if requested(["run", name]) is not None else shlex.quote(name)


def print_report(saved: list[tuple[str, Saved]], what: str = "this error") -> None:
    """Print `report` to stderr; never raises (stderr may be closed).

    Nothing when the program set `sys.stderr` to None: `print` would write to stdout.
    """
    try:
        from .display import printable

        stream = sys.stderr
        for line in report(saved, what) if stream is not None else ():
            print(printable(line), file=stream)
    except Exception:  # noqa: S110
        pass
