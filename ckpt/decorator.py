"""The `@ckpt.ckpt` decorator: a guest in the user's program that never changes it."""

from __future__ import annotations

import _thread  # built in, loaded at start-up: free to import
import functools
import os
import sys

from .target import Target, is_coroutine_function

# `typing` costs milliseconds to import and every run of a decorated program pays
# for `import ckpt`: annotations are strings here, so it is needed by type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Callable, TypeVar, Union, overload

    from .capture import Saved

    F = TypeVar("F", bound=Callable[..., Any])
    Active = Union[bool, Callable[..., Any]]
else:

    def overload(function):  # noqa: D103 (the last definition wins, as with typing's)
        return function


def _disabled_by_environment() -> bool:
    return os.environ.get("PYCKPT_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


# Read by every wrapper on every call: a plain module global is the cheapest test.
_enabled = not _disabled_by_environment()


class _ForksHeld:
    """``with forks_held:`` an import that a fork in another thread must not split.

    A child forked while a thread of ours imports gets the module half-initialized,
    its import lock held by a thread the child does not have: its first save would
    wait forever. So while we import, `os.fork()` in another thread waits (10 s at
    most); nothing that runs the user's code is ever done while holding it.
    """

    def __init__(self) -> None:
        self._lock = _thread.RLock()
        self._registered = False

    def __enter__(self) -> None:
        if not self._registered and hasattr(os, "register_at_fork"):
            self._registered = True  # registered twice by a race: acquired twice, released twice
            os.register_at_fork(before=self._before_fork,
                                after_in_parent=self._after_fork_in_parent,
                                after_in_child=self._after_fork_in_child)
        self._lock.acquire()

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._lock.release()
        except RuntimeError:  # forked inside the block: the child got a fresh lock
            pass

    def _before_fork(self) -> None:
        self._lock.acquire(timeout=10)

    def _after_fork_in_parent(self) -> None:
        self.__exit__()

    def _after_fork_in_child(self) -> None:
        self._lock = _thread.RLock()


forks_held = _ForksHeld()


def _can_save() -> bool:
    """Whether saving may go ahead now: it imports what it needs (on the first save).

    Not while the interpreter shuts down: imports fail then and the modules a save
    uses may be torn down already; the user's exception must pass untouched. A
    broken installation warns once and saves nothing.
    """
    global _broken
    try:
        if sys.is_finalizing() or _broken:
            return False
        if "ckpt.guest" not in sys.modules:
            with forks_held:
                from . import guest  # noqa: F401 (imported here, under forks_held)
        return True
    except ImportError as exc:
        _broken = True
        _warn_broken(exc)
    except Exception:  # noqa: S110 (only at shutdown, this module's globals gone)
        pass
    return False


_broken = False


def _warn_broken(exc: BaseException) -> None:
    try:
        import warnings

        from .errors import CkptWarning

        message = f"ckpt: cannot save checkpoints: {type(exc).__name__}: {exc}"
        try:
            warnings.warn(message, CkptWarning, stacklevel=4)
        except CkptWarning:  # -W error: shown, never raised into their code
            warnings.showwarning(CkptWarning(message), CkptWarning, "ckpt", 0)
    except Exception:  # noqa: S110 (no warnings machinery left: never their problem)
        pass


def _on_call(target: Target, args: tuple[Any, ...], kwargs: dict[str, Any],
             predicate: Callable[..., Any] | None) -> Saved | None:
    """Save a call as it starts; never raises into the user's code (see `guest`)."""
    if not _can_save():
        return None
    from .guest import save_call

    return save_call(target, args, kwargs, predicate)


def _on_error(target: Target, saved: Saved | None, args: tuple[Any, ...],
              kwargs: dict[str, Any], exc: BaseException) -> bool:
    """Save (or complete) the checkpoint of a call that raised; True once it is saved."""
    if not _can_save():
        return False
    from .guest import save_error

    return save_error(target, saved, args, kwargs, exc)


def _on_end(saved: Saved) -> None:
    """The call of `saved` returned or raised: retention may delete it from now on."""
    try:
        from .capture import end_call

        end_call(saved)
    except Exception:  # noqa: S110 (at shutdown, the modules it needs are gone)
        pass


def disable() -> None:
    """Turn capture off everywhere in this process (like `PYCKPT_DISABLE=1`)."""
    global _enabled
    _enabled = False


def enable() -> None:
    """Turn capture back on after `disable()` or `PYCKPT_DISABLE=1`."""
    global _enabled
    _enabled = True


def is_enabled() -> bool:
    """Whether decorated functions currently save checkpoints."""
    return _enabled


@overload
def ckpt(function: F, /) -> F: ...  # noqa: D103 (documented below)


@overload
def ckpt(  # noqa: D103, F811 (ruff cannot tell our stand-in is typing.overload)
    *, active: Active = True, on_error: bool = True, name: str | None = None,
    keep: int | None = None, redact: Iterable[str] = (),
) -> Callable[[F], F]: ...


def ckpt(  # noqa: F811
    function: Any = None, /, *, active: Active = True, on_error: bool = True,
    name: str | None = None, keep: int | None = None, redact: Iterable[str] = (),
) -> Any:
    """Save calls of the decorated function so they can be replayed later.

    Usable bare (``@ckpt.ckpt``) or with options (``@ckpt.ckpt(active=False)``).

    Args:
        function: the function, when used bare.
        active: save every call (True), none (False: only errors), or the calls
            for which this predicate, given the call's arguments, returns true.
        on_error: also save a call that raises an `Exception`.
        name: the name to file checkpoints under (default: `__qualname__`).
        keep: checkpoints kept for this name (default `PYCKPT_KEEP` or 5).
        redact: names, or `fnmatch` patterns, of arguments and locals whose values
            are never stored (also keys of a ``**kwargs`` argument and
            ``--name=value`` in `sys.argv`); `PYCKPT_REDACT` adds more for every
            function. Each is replaced by a `ckpt.Redacted`.

    Returns:
        The wrapped function, or a decorator when called with options.
    """
    if keep is not None and keep < 1:
        raise ValueError("ckpt: keep must be at least 1")
    patterns = (redact,) if isinstance(redact, str) else tuple(redact)
    if not all(isinstance(pattern, str) for pattern in patterns):
        raise TypeError("ckpt: redact takes names or patterns (strings)")

    def decorate(target_function: Any) -> Any:
        if isinstance(target_function, (staticmethod, classmethod)):
            return type(target_function)(decorate(target_function.__func__))
        if not callable(target_function):
            raise TypeError(f"ckpt: cannot decorate {type(target_function).__name__}")
        return _wrap(target_function, active, on_error, name, keep, patterns)

    return decorate if function is None else decorate(function)


def _wrap(
    function: Callable[..., Any], active: Active, on_error: bool, name: str | None,
    keep: int | None, redact: tuple[str, ...],
) -> Callable[..., Any]:
    target = Target(function, name, keep, redact)
    predicate = active if callable(active) else None
    saves_calls = predicate is not None or active is True
    suspends = _suspends(function)
    if is_coroutine_function(function):
        wrapper = _async_wrapper(function, target, saves_calls, predicate, on_error)
    elif suspends and (saves_calls or on_error):
        wrapper = _generator_wrapper(function, target, saves_calls, predicate, on_error,
                                     suspends == _CO_ASYNC_GENERATOR)
    elif saves_calls:
        wrapper = _active_wrapper(function, target, predicate, on_error)
    elif on_error:
        wrapper = _error_wrapper(function, target)
    else:
        wrapper = _plain_wrapper(function)
    wrapper.__ckpt_target__ = target  # type: ignore[attr-defined]
    return wrapper


_CO_GENERATOR, _CO_ASYNC_GENERATOR = 0x20, 0x200  # inspect's flags, without inspect


def _suspends(function: Any) -> int:
    """`_CO_GENERATOR` or `_CO_ASYNC_GENERATOR` when calling `function` makes one, else 0."""
    flags = getattr(getattr(function, "__code__", None), "co_flags", 0)
    return int(flags & (_CO_GENERATOR | _CO_ASYNC_GENERATOR))


def _plain_wrapper(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


# The wrappers below reach the save functions through closures, not module globals:
# a call from a `__del__` at interpreter shutdown may find this module's globals
# cleared. Their locals `target` and `error_saved` are read by `guest`, from the
# traceback, so that an error passing up through a recursion is saved only once.
# A save that starts with no stack left (RecursionError) is skipped there; an outer
# call, with room to spare, saves the error instead.


def _error_wrapper(function: Callable[..., Any], target: Target) -> Callable[..., Any]:
    on_error = _on_error

    # The idle path: nothing but the call inside try/except, no objects built.
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            if _enabled:
                try:
                    error_saved = on_error(target, None, args, kwargs, exc)  # noqa: F841
                except RecursionError:
                    pass
            raise

    return wrapper


def _active_wrapper(
    function: Callable[..., Any], target: Target, predicate: Callable[..., Any] | None,
    on_error: bool,
) -> Callable[..., Any]:
    on_call, on_exception, on_end = _on_call, _on_error, _on_end

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _enabled:
            return function(*args, **kwargs)
        try:
            saved = on_call(target, args, kwargs, predicate)
        except RecursionError:
            saved = None
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            if on_error and _enabled:
                try:
                    error_saved = on_exception(target, saved, args, kwargs, exc)  # noqa: F841
                except RecursionError:
                    pass
            raise
        finally:
            if saved is not None:
                try:
                    on_end(saved)
                except RecursionError:
                    pass

    return wrapper


def _async_wrapper(
    function: Callable[..., Any], target: Target, saves_calls: bool,
    predicate: Callable[..., Any] | None, on_error: bool,
) -> Callable[..., Any]:
    on_call, on_exception, on_end = _on_call, _on_error, _on_end

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        saved = None
        if _enabled and saves_calls:
            try:
                saved = on_call(target, args, kwargs, predicate)
            except RecursionError:
                pass
        try:
            return await function(*args, **kwargs)
        except Exception as exc:
            if on_error and _enabled:
                try:
                    error_saved = on_exception(target, saved, args, kwargs, exc)  # noqa: F841
                except RecursionError:
                    pass
            raise
        finally:
            if saved is not None:
                try:
                    on_end(saved)
                except RecursionError:
                    pass

    return wrapper


# A generator raises while it is iterated, long after the call returned: the call is
# saved when it is made (if `active`), and the generator it returns is wrapped so that
# an error raised while iterating it completes (or creates) the checkpoint.


def _generator_wrapper(
    function: Callable[..., Any], target: Target, saves_calls: bool,
    predicate: Callable[..., Any] | None, on_error: bool, asynchronous: bool,
) -> Callable[..., Any]:
    on_call, on_exception, on_end = _on_call, _on_error, _on_end
    iterating = _async_iterating(target, on_error) if asynchronous \
        else _iterating(target, on_error)

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _enabled:
            return function(*args, **kwargs)
        saved = None
        if saves_calls:
            try:
                saved = on_call(target, args, kwargs, predicate)
            except RecursionError:
                pass
        try:
            stream = function(*args, **kwargs)  # a bad call fails here, as without us
        except Exception as exc:
            if on_error and _enabled:
                try:
                    error_saved = on_exception(target, saved, args, kwargs, exc)  # noqa: F841
                except RecursionError:
                    pass
            if saved is not None:
                on_end(saved)
            raise
        wrapped = iterating(stream, saved, args, kwargs)
        wrapped.__name__, wrapped.__qualname__ = stream.__name__, stream.__qualname__
        if saved is not None:
            _end_when_gone(wrapped, saved)
        return wrapped

    return wrapper


def _end_when_gone(wrapped: Any, saved: Saved) -> None:
    """End the call of `saved` once its generator is gone: finished, closed or never started.

    A generator never started runs no `finally` when it is dropped; a weak reference
    still tells. weakref is loaded by then: the save imported it.
    """
    import weakref

    try:
        weakref.finalize(wrapped, _on_end, saved).atexit = False
    except Exception:  # noqa: S110 (never our problem in their program)
        pass


def _iterating(target: Target, on_error: bool) -> Callable[..., Any]:
    on_exception = _on_error

    # Named `wrapper` and holding `target` and `error_saved`: guest reads them from the
    # traceback, so a recursive generator's error is saved once (see above).
    def wrapper(stream: Any, saved: Saved | None, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        try:
            return (yield from stream)  # send, throw and close reach theirs unchanged
        except Exception as exc:
            if on_error and _enabled:
                try:
                    error_saved = on_exception(target, saved, args, kwargs, exc)  # noqa: F841
                except RecursionError:
                    pass
            raise

    return wrapper


def _async_iterating(target: Target, on_error: bool) -> Callable[..., Any]:
    on_exception = _on_error

    async def wrapper(stream: Any, saved: Saved | None, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        try:
            pending = stream.asend(None)
            while True:  # `yield from` for async generators: asend, athrow and aclose
                try:
                    item = await pending
                except StopAsyncIteration:
                    return
                try:
                    sent = yield item
                except GeneratorExit:
                    await stream.aclose()
                    raise
                except BaseException as thrown:
                    pending = stream.athrow(thrown)
                else:
                    pending = stream.asend(sent)
        except Exception as exc:
            if on_error and _enabled:
                try:
                    error_saved = on_exception(target, saved, args, kwargs, exc)  # noqa: F841
                except RecursionError:
                    pass
            raise

    return wrapper
