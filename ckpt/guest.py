"""A save is a guest in the user's program: what it may never change there, and how.

Every save runs through `_visit`, which keeps these promises:

- Nothing a save raises reaches the user's code: it becomes a `CkptWarning`, and
  even under ``-W error`` (or pytest's) the warning is shown, never raised.
- What the user's own signal handlers raise during a save (a deadline's
  TimeoutError, Ctrl-C's KeyboardInterrupt) reaches their code at once, exactly
  as without ckpt: the save is abandoned and leaves no partial checkpoint.
- A save that runs out of stack or memory is dropped with a warning; the
  user's exception is theirs. An error passing up through a recursion is saved
  once, by the innermost call that could save it.
- A fork in another thread during a save leaves the child able to save (see
  `_after_fork_in_child` and `decorator.forks_held`).

Imported on the first save only: `import ckpt` never pays for it.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings

from . import values
from .decorator import forks_held
from .errors import CkptWarning

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Callable

    from .capture import Saved
    from .target import Target

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_GENERATORS = 0x20 | 0x200  # CO_GENERATOR, CO_ASYNC_GENERATOR
_DECORATOR_FILE = _PACKAGE + "decorator.py"
# The C functions: `signal`'s wrappers convert to and from enums, 50 times slower.
_signals: Any = sys.modules.get("_signal") or __import__("_signal")

# Imported before the first save, under `forks_held`: later saves import nothing
# that a fork in another thread could split (see decorator.forks_held).
_SAVING_NEEDS = ["ckpt.capture", "ckpt.keys", "ckpt.source", "cloudpickle", "fnmatch", "hashlib",
                 "hmac", "socket", "concurrent.futures.thread"]
if not sys.platform.startswith("linux"):
    _SAVING_NEEDS.append("platformdirs")
_prepared = False

_local = threading.local()  # .busy: this thread is saving
_carried: list[tuple[int, Any, Any]] = []  # (signal, their handler, ours) during a save
_saving_in_main = False  # the main thread is saving: handlers' exceptions leave the save


class _Raised(BaseException):
    """What a user's signal handler raised, carried past the save's ``except Exception``."""

    def __init__(self, raised: BaseException) -> None:
        super().__init__()
        self.raised = raised


def save_call(target: Target, args: tuple[Any, ...], kwargs: dict[str, Any],
              predicate: Callable[..., Any] | None) -> Saved | None:
    """Save a call as it starts (`capture.save_call`), as a guest."""
    saved: Saved | None = _visit(target.name, _save_call, target, args, kwargs, predicate)
    return saved


def save_error(target: Target, saved: Saved | None, args: tuple[Any, ...],
               kwargs: dict[str, Any], exc: BaseException) -> bool:
    """Save the error of a call (`capture.save_error`), as a guest; True once it is saved.

    An error that a deeper call of the same function saved already is not saved
    again: a recursion N deep would otherwise save N checkpoints, each with every
    frame below it (N² frames).
    """
    if _saved_deeper(exc, target):
        return True
    return save_error_now(target, saved, args, kwargs, exc) is not None


def save_error_now(target: Target, saved: Saved | None, args: tuple[Any, ...],
                   kwargs: dict[str, Any], exc: BaseException) -> Saved | None:
    """Save the error of a call as a guest, with no recursion to look for; the checkpoint.

    For callers that are not a decorator's wrapper (the pytest plugin). None when it
    was not saved (a warning said why).
    """
    done: Saved | None = _visit(target.name, _save_error, target, saved, args, kwargs, exc)
    return done


def _save_call(target: Target, args: tuple[Any, ...], kwargs: dict[str, Any],
               predicate: Callable[..., Any] | None) -> Saved | None:
    from .capture import save_call

    return save_call(target, args, kwargs, predicate)


def _save_error(target: Target, saved: Saved | None, args: tuple[Any, ...],
                kwargs: dict[str, Any], exc: BaseException) -> Saved | None:
    from .capture import save_error

    return save_error(target, saved, args, kwargs, exc)


def _visit(name: str, work: Callable[..., Any], *args: Any) -> Any:
    """Run `work(*args)` as a save; None when it failed, or when this thread is saving already.

    Only what the user's signal handlers raise leaves it (see `_carry_signals`).
    """
    if getattr(_local, "busy", False):
        return None  # a decorated function called while we pickle: no save within a save
    _local.busy = True
    try:
        _carry_signals()
        try:
            return _attempt(name, work, args)
        except _Raised as carried:
            raised = carried.raised
        finally:
            _uncarry_signals()
    finally:
        _local.busy = False
    raise raised  # outside every handler: chained to their exception, if any, not to ours


def _attempt(name: str, work: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    try:
        _prepare()
    except Exception as exc:
        warn(f"ckpt: cannot save checkpoints: {type(exc).__name__}: {exc}")
        return None
    values.begin_save()
    try:
        return work(*args)
    except RecursionError:  # before Exception, which it is: no stack left to save with
        warn(f"ckpt: could not save checkpoint {name!r}: the call is too deep to save "
             "(RecursionError); an outer call of it may save it")
    except MemoryError:
        warn(f"ckpt: could not save checkpoint {name!r}: out of memory")
    except Exception as exc:
        warn(f"ckpt: could not save checkpoint {name!r}: {type(exc).__name__}: {exc}")
    finally:
        values.end_save()
    return None


def _prepare() -> None:
    """Import what saving needs, on the first save, with forks held off meanwhile."""
    global _prepared
    if not _prepared:
        import importlib

        with forks_held:
            for module in _SAVING_NEEDS:
                importlib.import_module(module)
        _prepared = True


def warn(message: str) -> None:
    """Warn (`CkptWarning`) at the user's line; never raise, not even under ``-W error``.

    With the warning filter at "error", their program asked for warnings to stop
    it, but ckpt promises never to: the warning is shown (or recorded, under
    pytest) as if the filter were "default", and their code runs on.
    """
    try:
        frame: FrameType | None = sys._getframe(0)
        level = 1
        while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
            frame, level = frame.f_back, level + 1
        try:
            warnings.warn(message, CkptWarning, stacklevel=level)
        except CkptWarning:
            where = (frame.f_code.co_filename, frame.f_lineno) if frame else ("sys", 1)
            warnings.showwarning(CkptWarning(message), CkptWarning, *where)
    except Exception:  # noqa: S110 (no stack left, stderr closed, shutting down)
        pass


# -- signals --------------------------------------------------------------------------------


def _carry_signals() -> None:
    """In the main thread, wrap each Python signal handler so what it raises leaves the save.

    Signal handlers run in the main thread only, between any two bytecodes:
    during a save, inside its ``except Exception``, which would swallow a
    deadline's TimeoutError. Each handler still runs at once; what it raises is
    carried out of the save as `_Raised`, the save is abandoned and the exception
    raised again from where the save was called. Other threads' saves never see
    a handler run.

    Known effects of the swap, while a main-thread save runs: `signal.getsignal`
    called by their code (a `__reduce__`, the `active` predicate) sees our
    wrapper; and re-installing a handler resets the restart flag that
    `signal.siginterrupt(signum, False)` set (Python retries interrupted system
    calls itself since 3.5, so only the moment a handler runs can differ).
    """
    global _saving_in_main
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        for number in _signal_numbers():
            handler = _signals.getsignal(number)
            if callable(handler):
                if type(handler) is type(_carrier):  # perhaps ours, left behind: unwrap it
                    handler = getattr(handler, "__ckpt_handler__", handler)
                carry = _carrier(handler)
                _signals.signal(number, carry)
                _carried.append((number, handler, carry))
    except BaseException:  # a pending signal's handler ran as we installed: theirs
        _uncarry_signals()
        raise
    _saving_in_main = True


def _carrier(handler: Callable[..., Any]) -> Callable[..., Any]:
    def carry(signum: int, frame: FrameType | None) -> Any:
        if not _saving_in_main:
            return handler(signum, frame)
        interrupted = sys.exc_info()[1]
        try:
            return handler(signum, frame)
        except BaseException as exc:
            if exc.__context__ is interrupted:  # what our code was handling, not theirs
                exc.__context__ = None
            if exc.__traceback__ is not None:
                exc.__traceback__ = exc.__traceback__.tb_next  # from their handler on
            raise _Raised(exc) from None

    carry.__ckpt_handler__ = handler  # type: ignore[attr-defined]
    return carry


def _uncarry_signals() -> None:
    """Put their handlers back; then raise what one of them raised meanwhile, if any."""
    global _saving_in_main
    _saving_in_main = False
    late: BaseException | None = None
    while _carried:
        number, handler, carry = _carried.pop()
        try:
            if _signals.getsignal(number) is carry:
                _signals.signal(number, handler)
        except BaseException as exc:  # a pending signal ran their handler: after the others
            late = late or exc
    if late is not None:
        raise late


_numbers: list[int] = []


def _signal_numbers() -> list[int]:
    if not _numbers:
        _numbers.extend(sorted(int(number) for number in _signals.valid_signals()))
    return _numbers


# -- recursion ------------------------------------------------------------------------------


def _saved_deeper(exc: BaseException, target: Target) -> bool:
    """Whether a deeper call of `target`, below the wrapper that caught `exc`, saved it.

    Read from the traceback: the wrappers' locals `target` and `error_saved` (see
    decorator.py). The walk stops where the traceback stops following the calls
    (an exception object raised a second time carries its old traceback on).
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        below = tb.tb_next
        frame = below.tb_frame
        code = frame.f_code
        # a finished generator's frame forgets its caller (f_back is None): trust the link
        if frame.f_back is not tb.tb_frame and not (
                frame.f_back is None and code.co_flags & _GENERATORS):
            return False
        if code.co_name == "wrapper" and code.co_filename == _DECORATOR_FILE:
            local = frame.f_locals
            if local.get("target") is target:
                return bool(local.get("error_saved"))
        tb = below
    return False


# -- fork -----------------------------------------------------------------------------------


def _after_fork_in_child() -> None:
    """The child of a fork: no save is running in it, whatever the parent's threads did."""
    global _local, _saving_in_main
    _local = threading.local()  # forked from inside a save: the child is not saving
    if _saving_in_main:  # the parent's main thread was saving: the handlers are ours
        try:
            _uncarry_signals()
        except BaseException:  # noqa: S110 (a handler of theirs raised: nowhere to go)
            pass
    # cloudpickle takes this lock as it pickles a class by value: held by a thread of
    # the parent now, it would stop the child's first such save forever
    lock = getattr(sys.modules.get("cloudpickle.cloudpickle"), "_DYNAMIC_CLASS_TRACKER_LOCK",
                   None)
    reinit = getattr(lock, "_at_fork_reinit", None)
    if reinit is not None:
        reinit()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
