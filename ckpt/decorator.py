"""The `@ckpt.ckpt` decorator: a guest in the user's program that never changes it."""

from __future__ import annotations

import functools
import os

from .target import Target, is_coroutine_function

# `typing` costs milliseconds to import and every run of a decorated program pays
# for `import ckpt`: annotations are strings here, so it is needed by type checkers only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar, Union, overload

    F = TypeVar("F", bound=Callable[..., Any])
    Active = Union[bool, Callable[..., Any]]
else:

    def overload(function):  # noqa: D103 (the last definition wins, as with typing's)
        return function


def _disabled_by_environment() -> bool:
    return os.environ.get("PYCKPT_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


# Read by every wrapper on every call: a plain module global is the cheapest test.
_enabled = not _disabled_by_environment()


def _capture(action: str, *args: Any) -> Any:
    """Call `capture.<action>(*args)`; never raise into the user's code.

    Saving needs pickling, hashing and file formats: imported on the first save only.
    Even that import failing (a broken installation) is a warning, not their error.
    """
    try:
        from . import capture
    except Exception as exc:
        import warnings

        from .errors import CkptWarning

        warnings.warn(f"ckpt: cannot save checkpoints: {type(exc).__name__}: {exc}",
                      CkptWarning, stacklevel=3)
        return None
    return getattr(capture, action)(*args)


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
    keep: int | None = None,
) -> Callable[[F], F]: ...


def ckpt(  # noqa: F811
    function: Any = None, /, *, active: Active = True, on_error: bool = True,
    name: str | None = None, keep: int | None = None,
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

    Returns:
        The wrapped function, or a decorator when called with options.
    """
    if keep is not None and keep < 1:
        raise ValueError("ckpt: keep must be at least 1")

    def decorate(target_function: Any) -> Any:
        if isinstance(target_function, (staticmethod, classmethod)):
            return type(target_function)(decorate(target_function.__func__))
        if not callable(target_function):
            raise TypeError(f"ckpt: cannot decorate {type(target_function).__name__}")
        return _wrap(target_function, active, on_error, name, keep)

    return decorate if function is None else decorate(function)


def _wrap(
    function: Callable[..., Any], active: Active, on_error: bool, name: str | None,
    keep: int | None,
) -> Callable[..., Any]:
    target = Target(function, name, keep)
    predicate = active if callable(active) else None
    saves_calls = predicate is not None or active is True
    if is_coroutine_function(function):
        wrapper = _async_wrapper(function, target, saves_calls, predicate, on_error)
    elif saves_calls:
        wrapper = _active_wrapper(function, target, predicate, on_error)
    elif on_error:
        wrapper = _error_wrapper(function, target)
    else:
        wrapper = _plain_wrapper(function)
    wrapper.__ckpt_target__ = target  # type: ignore[attr-defined]
    return wrapper


def _plain_wrapper(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


def _error_wrapper(function: Callable[..., Any], target: Target) -> Callable[..., Any]:
    # The idle path: nothing but the call inside try/except, no objects built.
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            if _enabled:
                _capture("save_error", target, None, args, kwargs, exc)
            raise

    return wrapper


def _active_wrapper(
    function: Callable[..., Any], target: Target, predicate: Callable[..., Any] | None,
    on_error: bool,
) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _enabled:
            return function(*args, **kwargs)
        saved = _capture("save_call", target, args, kwargs, predicate)
        try:
            return function(*args, **kwargs)
        except Exception as exc:
            if on_error and _enabled:
                _capture("save_error", target, saved, args, kwargs, exc)
            raise
        finally:
            _capture("end_call", saved)

    return wrapper


def _async_wrapper(
    function: Callable[..., Any], target: Target, saves_calls: bool,
    predicate: Callable[..., Any] | None, on_error: bool,
) -> Callable[..., Any]:
    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        saved = None
        if _enabled and saves_calls:
            saved = _capture("save_call", target, args, kwargs, predicate)
        try:
            return await function(*args, **kwargs)
        except Exception as exc:
            if on_error and _enabled:
                _capture("save_error", target, saved, args, kwargs, exc)
            raise
        finally:
            if saved is not None:
                _capture("end_call", saved)

    return wrapper
