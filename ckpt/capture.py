"""Turning a call of a decorated function into checkpoint parts in the store."""

from __future__ import annotations

import inspect
import os
import time
import traceback
import types
from dataclasses import dataclass
from typing import Any, Callable

from . import environment, retention, verified, workers
from .fileformat import VERSION
from .header import (
    CallDetail,
    ErrorDetail,
    ExceptionInfo,
    ExceptionLine,
    FrameInfo,
    Location,
    Summary,
    ValueInfo,
)
from .location import find_store_path
from .store import CALL_SUFFIX, ERROR_SUFFIX, Store, new_id
from .target import Target, configured_max_bytes
from .values import MESSAGE_LIMIT, Pickled, pickle_value, type_name, var_keyword_name

_DECORATOR_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "decorator.py")


@dataclass
class Saved:
    """A call part on disk, which an error part may complete."""

    store: Store
    id: str
    stamp: int
    tag: bytes
    started: float
    size: int = 0  # bytes of the call part
    # A call part saved only for an error waits here, unlisted, until its error part
    # is in place: interrupted between the two, no checkpoint without its error shows.
    staged: str = ""


class FrameTarget(Target):
    """A function found on a crash's stack (`ckpt.stack`), not wrapped by the decorator.

    Its arguments are its parameters' values at the error, read from its frame's
    locals; its checkpoint records that (``arguments_from_locals``), so that a replay
    says so.
    """


# What save_call returns when it warned: the error save then stays silent, so
# one invocation never gives more than one warning.
SAVE_FAILED = Saved(Store(""), "", 0, b"", 0.0)

_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional_only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}


_POSITIONAL = frozenset({"positional_only", "positional_or_keyword"})


def bind_arguments(
    target: Target, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[tuple[str, str, Any]]:
    """The call's arguments as (name, kind, value), defaults applied."""
    if target.signature is not None:
        parameters = target.signature.parameters
        if not kwargs and len(args) == len(parameters):
            kinds = [_KINDS[parameter.kind] for parameter in parameters.values()]
            if _POSITIONAL.issuperset(kinds):
                # each parameter given by position, in order: what `bind` would answer,
                # without its ~10 us per call (no default to apply, nothing to check)
                return list(zip(parameters, kinds, args))
        try:
            bound = target.signature.bind(*args, **kwargs)
        except TypeError:
            pass  # the call itself is about to fail the same way
        else:
            bound.apply_defaults()
            parameters = target.signature.parameters
            return [
                (name, _KINDS[parameters[name].kind], value)
                for name, value in bound.arguments.items()
            ]
    return [("args", "var_positional", args), ("kwargs", "var_keyword", dict(kwargs))]


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_call(
    target: Target, arguments: list[tuple[str, str, Any]], trigger: str, started: float
) -> Saved:
    store = Store(find_store_path())
    checkpoint_id, stamp = _new_identity()
    redaction = target.redaction()
    pickled = [pickle_value(redaction.apply(name, value, kind == "var_keyword"))
               for name, kind, value in arguments]
    location = target.location
    summary = Summary(
        part="call", id=checkpoint_id, name=target.name, stamp=stamp, trigger=trigger,
        function=f"{location['module']}:{location['qualname']}", exception=None, call_tag=None,
        worker=workers.identity(),
    ).to_json()
    detail = CallDetail(
        location=Location(**location),
        arguments=tuple(ValueInfo.of(name, kind, record.description)
                        for (name, kind, _), record in zip(arguments, pickled)),
        metadata={
            **environment.process_metadata(redaction),
            "packages": target.packages,
            **_git_state(location["file"]),
            "ckpt_format": VERSION,
            **({"arguments_from_locals": True} if isinstance(target, FrameTarget) else {}),
        },
    ).to_json()
    function_record = Pickled(target.by_value, [], {})
    temporary, tag, size = store.stage_part(summary, detail, [function_record, *pickled])
    if trigger == "call":
        store.publish(temporary, store.filename(target.key, stamp, checkpoint_id, CALL_SUFFIX))
        temporary = ""
        verified.record_written()  # its new blobs, now that publishing set their times
    return Saved(store, checkpoint_id, stamp, tag, started, size, temporary)


def _git_state(filename: str | None) -> dict[str, Any]:
    if not filename or not os.path.exists(filename):
        return {"git_commit": None, "git_dirty": None}
    return environment.git_state(filename)


def _new_identity() -> tuple[str, int]:
    return new_id(), time.time_ns()


def _is_ours(filename: str) -> bool:
    return filename == _DECORATOR_FILE


def _traceback_from(exc: BaseException, target: Target) -> types.TracebackType | None:
    """The traceback from the target function's own frame down (callers cut off)."""
    code = getattr(target.function, "__code__", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return tb
        tb = tb.tb_next
    return exc.__traceback__  # a callable object: no frame of its own to start at


def _user_tracebacks(start: types.TracebackType | None) -> list[types.TracebackType]:
    """The traceback entries from `start` down, without our wrappers' frames."""
    entries = []
    tb = start
    while tb is not None:
        if not _is_ours(tb.tb_frame.f_code.co_filename):
            entries.append(tb)
        tb = tb.tb_next
    return entries


def _format_exception(exc: BaseException, start: types.TracebackType | None) -> tuple[str, str]:
    """The exception's message, and its traceback with the cause/context chain, as text.

    The exception's `__str__` runs once (in TracebackException); a message longer
    than `MESSAGE_LIMIT` characters is cut, there and in the traceback text.
    """
    formatted = traceback.TracebackException(type(exc), exc, start)
    seen = set()
    pending = [formatted]
    while pending:  # the exception and its __cause__/__context__ chain
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        kept = [frame for frame in current.stack if not _is_ours(frame.filename)]
        current.stack = traceback.StackSummary.from_list(kept)
        current._str = _cut(getattr(current, "_str", ""))  # type: ignore[attr-defined]
        pending += [c for c in (current.__cause__, current.__context__) if c is not None]
    return getattr(formatted, "_str", ""), "".join(formatted.format())


def _cut(message: str) -> str:
    if len(message) <= MESSAGE_LIMIT:
        return message
    return f"{message[:MESSAGE_LIMIT]}... [{len(message) - MESSAGE_LIMIT} more characters]"


def exception_summary(exc: BaseException, start: types.TracebackType | None) -> dict[str, Any]:
    """Type, message and formatted traceback (with its cause/context chain)."""
    message, text = _format_exception(exc, start)
    return {"type": type_name(exc), "message": message, "traceback": text}


def _write_error(target: Target, saved: Saved, exc: BaseException) -> int:
    """Write the error part of `saved`; return its size."""
    start = _traceback_from(exc, target)
    frames = [tb.tb_frame for tb in _user_tracebacks(start)]
    pickled: list[Pickled] = []
    frame_details = []
    redaction = target.redaction()
    for frame in frames:
        names = []
        keywords = var_keyword_name(frame.f_code)
        module_level = frame.f_code.co_name == "<module>"  # a doctest's example: globals
        for local_name, value in list(frame.f_locals.items()):
            if local_name.startswith("@py") or (module_level and local_name.startswith("__")):
                continue  # pytest's assertion-rewriting temporaries; a module's dunders
            record = pickle_value(redaction.apply(local_name, value, local_name == keywords))
            pickled.append(record)
            names.append(ValueInfo.of(local_name, None, record.description))
        frame_details.append(FrameInfo(frame.f_code.co_name, _qualname(frame),
                                       frame.f_code.co_filename, frame.f_lineno, tuple(names),
                                       *_frame_module(frame), *_code_facts(frame.f_code)))
    summary_exc = exception_summary(exc, start)
    summary = Summary(
        part="error", id=saved.id, name=target.name, stamp=saved.stamp, trigger="error",
        function=f"{target.location['module']}:{target.location['qualname']}",
        exception=ExceptionLine(summary_exc["type"], summary_exc["message"][:200]),
        call_tag=saved.tag.hex(),
    ).to_json()
    duration = None if saved.started == 0 else time.perf_counter() - saved.started
    # The module's source as read at the first save: kept with errors (not with every
    # call) so a checkpoint replayed elsewhere can show what changed since.
    detail = ErrorDetail(ExceptionInfo(**summary_exc), duration, tuple(frame_details),
                         target.module_source).to_json()
    store = saved.store
    final = store.filename(target.key, saved.stamp, saved.id, ERROR_SUFFIX)
    size = store.write_part(final, summary, detail, pickled)[1]
    call_part = store.filename(target.key, saved.stamp, saved.id, CALL_SUFFIX)
    if saved.staged:
        # the error part first: interrupted now, it is an orphan that nothing lists
        store.publish(saved.staged, call_part)
    elif not os.path.exists(call_part):
        # another process's retention removed the call part meanwhile: don't leave half
        _unlink_quietly(final)
    verified.record_written()  # its new blobs, now that publishing set their times
    return size


def _qualname(frame: types.FrameType) -> str:
    return str(getattr(frame.f_code, "co_qualname", frame.f_code.co_name))


def _frame_module(frame: types.FrameType) -> tuple[str | None, bool]:
    """The module to import to find the frame's function again, and whether it ran as a script.

    As `Target.module_name`: a script run with `python -m package.module` is that module.
    """
    name = frame.f_globals.get("__name__")
    if name != "__main__":
        return (name if isinstance(name, str) else None), False
    spec = frame.f_globals.get("__spec__")
    return (str(spec.name) if spec is not None and spec.name else "__main__"), True


# What one code object's frame says of it, worked out at its first error in this process
# (as `Target.location` is at the first save): a deep recursion pays for it once.
_facts: dict[types.CodeType, tuple[str | None, str | None, list[list[str]], list[str]]] = {}
_STDLIB = os.path.dirname(os.__file__) + os.sep


def _code_facts(code: types.CodeType) -> tuple[str | None, str | None, list[list[str]], list[str]]:
    """Source and file hash, parameters (name, kind) and the parameters its body assigns to."""
    found = _facts.get(code)
    if found is None:
        from .binding import assigned_parameters, code_parameters

        parameters = [[name, kind] for name, kind in code_parameters(code)]
        hashes = _hashes(code.co_filename, str(getattr(code, "co_qualname", code.co_name)))
        found = (*hashes, parameters, assigned_parameters(code))
        if len(_facts) > 1024:
            _facts.clear()
        _facts[code] = found
    return found


def _hashes(filename: str, qualname: str) -> tuple[str | None, str | None]:
    """The function's source hash and its file's, for the user's own files only.

    The standard library's and installed packages' are not parsed: they are not
    what `--from-changed` looks for, and parsing them would slow the error.
    """
    from .source import file_hash, source_hash

    if not os.path.isabs(filename) and os.path.exists(filename):
        filename = os.path.abspath(filename)  # as `Target.location` records it
    parts = filename.split(os.sep)
    if not os.path.isabs(filename) or filename.startswith(_STDLIB) or \
            "site-packages" in parts or "dist-packages" in parts:
        return None, None
    return source_hash(filename, qualname), file_hash(filename)


def _warn(action: str, target: Target, exc: BaseException) -> None:
    from .guest import warn

    hint = getattr(exc, "hint", "")  # a CkptError says what to do about it (chmod 700 ...)
    warn(f"ckpt: could not {action} checkpoint {target.name!r}: {type(exc).__name__}: {exc}"
         + (f" ({hint})" if hint else ""))


# Checkpoints of calls still running in this process: an error may yet complete
# them, so this process's retention must not delete them.
_in_flight: set[str] = set()


def end_call(saved: Saved | None) -> None:
    """The call of a checkpoint saved at call time has returned or raised."""
    global _calls_ended
    if saved is not None:
        _in_flight.discard(saved.id)
        _calls_ended += 1


# Retention finds something new to delete only once one of this process's checkpoints
# is no longer protected (its call ended, or an error was saved). Until then a save
# does not list the store again: in a recursion N deep of an active function, every
# level would list the N checkpoints of the levels above it (N² in all).
_calls_ended = 0
_pruned_at: dict[tuple[str, str], int] = {}  # (store, name key) -> _calls_ended then


# The store's size as this process last measured it, and when: measuring stats every
# file, so between measurements (at most 10 s apart) our own writes are added to it.
_store_sizes: dict[str, tuple[int, float]] = {}
_MEASURE_EVERY = 10.0


def _prune(target: Target, saved: Saved, written: int) -> None:
    """Apply `keep` and the store's budget after `written` more bytes were saved."""
    protect = set(_in_flight) | {saved.id}
    store = saved.store
    if _pruned_at.get((store.path, target.key)) != _calls_ended:
        retention.prune(store, target.key, target.keep_count(), protect=protect)
        _pruned_at[(store.path, target.key)] = _calls_ended
    limit, now = configured_max_bytes(), time.monotonic()
    total, measured = _store_sizes.get(store.path, (None, 0.0))
    if total is not None and now - measured < _MEASURE_EVERY and total + written <= limit:
        _store_sizes[store.path] = (total + written, measured)
        return
    _store_sizes[store.path] = (retention.enforce_budget(store, limit, protect=protect), now)


def save_call(
    target: Target, args: tuple[Any, ...], kwargs: dict[str, Any],
    active: Callable[..., Any] | None,
) -> Saved | None:
    """Save a call before it runs; warns rather than raise (run by `guest.save_call`)."""
    try:
        if active is not None and not _ask(active, target, args, kwargs):
            return None
        started = time.perf_counter()
        saved = _write_call(target, bind_arguments(target, args, kwargs), "call", started)
        _in_flight.add(saved.id)
        try:
            _prune(target, saved, saved.size)
        except BaseException:  # not returned: nothing will end this call for retention
            _in_flight.discard(saved.id)
            raise
        return saved
    except Exception as exc:
        _warn("save", target, exc)
        return SAVE_FAILED


def _ask(active: Callable[..., Any], target: Target, args: Any, kwargs: Any) -> bool:
    try:
        return bool(active(*args, **kwargs))
    except Exception as exc:
        _warn("decide whether to save (the `active` predicate raised)", target, exc)
        return False


def save_error(
    target: Target, saved: Saved | None, args: tuple[Any, ...], kwargs: dict[str, Any],
    exc: BaseException,
) -> Saved | None:
    """Complete (or, with no call part, create) a checkpoint for a raised exception.

    Returns the checkpoint once it is saved, else None; warns rather than raise (run
    by `guest.save_error`): the user's exception is what propagates.
    """
    quiet = saved is SAVE_FAILED
    saved = None if quiet else saved
    try:
        fresh = saved is None
        if saved is None:
            arguments = bind_arguments(target, args, kwargs)
            saved = _write_call(target, arguments, "error", 0.0)
        try:
            written = _write_error(target, saved, exc) + (saved.size if fresh else 0)
        except BaseException:
            _unlink_quietly(saved.staged)  # a call part saved only for this error, unlisted
            raise
        _prune(target, saved, written)
        _pruned_at.pop((saved.store.path, target.key), None)  # it is not protected from now on
    except Exception as exc_saving:
        if not quiet:
            _warn("save", target, exc_saving)
        return None
    return saved
