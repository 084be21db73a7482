"""A checkpoint read back from the store: arguments, locals, exception, and a way to call again."""

from __future__ import annotations

import collections
import importlib
import os
import sys

from .binding import Binding, bind, keywords, positional
from .blobread import BlobLoader
from .errors import CkptError, CorruptCheckpointError
from .fileformat import Part, read_part
from .header import CallDetail, ErrorDetail, Summary
from .keys import load_key
from .location import find_store_path
from .store import Entry, Store, check_signed_names
from .values import Unpicklable, unpickle_value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


# collections.namedtuple, not typing.NamedTuple: importing typing would slow every replay.
class Frame(collections.namedtuple("Frame", "function file line locals")):
    """One frame of the saved traceback, with its locals."""

    __slots__ = ()
    function: str
    file: str
    line: int
    locals: dict[str, Any]


class ExceptionSummary(collections.namedtuple("ExceptionSummary", "type message traceback")):
    """The exception a call raised, as text (the object itself is not kept)."""

    __slots__ = ()
    type: str
    message: str
    traceback: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type


class Checkpoint:
    """One saved invocation of a decorated function.

    Attributes:
        id: unique id.
        name: the name it is filed under.
        trigger: ``call`` (saved when called) or ``error`` (the call raised).
        created: seconds since the epoch when it was called.
        arguments: parameter name to value, defaults applied.
        frames: the saved frames, the decorated function's first, innermost last.
        exception: what the call raised, or None.
        metadata: where and how it was taken (host, python, argv, packages...).
        location: how the function is found again (module, qualname, file...).
    """

    def __init__(
        self, *, id: str, name: str, trigger: str, created: float,
        arguments: dict[str, Any], kinds: dict[str, str], frames: list[Frame],
        exception: ExceptionSummary | None, metadata: dict[str, Any],
        location: dict[str, Any], function_pickle: bytes | None = None,
    ) -> None:
        self.id, self.name, self.trigger, self.created = id, name, trigger, created
        self.arguments, self.kinds, self.frames = arguments, kinds, frames
        self.exception, self.metadata, self.location = exception, metadata, location
        self._function_pickle = function_pickle
        self._saved_function: Callable[..., Any] | None = None
        self._device: str | None = None  # where the load put tensors: the copy's go there too
        self._told: set[str] = set()  # the notices the load showed (each is said once)

    @property
    def saved_function(self) -> Callable[..., Any] | None:
        """The copy of the function saved at capture (by value), or None.

        Unpickled on first use only: it needs cloudpickle (~20 ms to import) and
        may import what the function refers to, and a replay of a function that
        can be imported by name never needs it.
        """
        if self._saved_function is None and self._function_pickle is not None:
            from .tensors import loading_on

            # its closure or globals may hold tensors (a script's model): as the arguments'
            with loading_on(self._device) as notices:
                self._saved_function = unpickle_value(self._function_pickle, [])
            for notice in notices:
                if notice not in self._told:
                    print(f"note: {notice}", file=sys.stderr)
        return self._saved_function

    def __repr__(self) -> str:
        return (f"Checkpoint(id={self.id!r}, name={self.name!r}, trigger={self.trigger!r}, "
                f"arguments={self.arguments!r}, exception={self.exception!r})")

    @property
    def args(self) -> tuple[Any, ...]:
        """The positional values of the call, by the signature it had at capture."""
        return positional(self.arguments, self.kinds)

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword values of the call, by the signature it had at capture.

        To call the function as it is now, `bind` it: values go by parameter name.
        """
        return keywords(self.arguments, self.kinds)

    @property
    def locals(self) -> dict[str, Any]:
        """The locals of the decorated function's frame at the error ({} if none)."""
        return self.frames[0].locals if self.frames else {}

    @property
    def function(self) -> Callable[..., Any]:
        """The function as it is now (imported by name), else the copy saved by value."""
        found = _import_function(self.location)
        if found is not None:
            return found
        if self.saved_function is not None:
            return self.saved_function
        raise CkptError(
            f"{self.location['module']}:{self.location['qualname']} no longer exists",
            hint="it was renamed or deleted since the checkpoint was taken",
        )

    def bind(self, function: Callable[..., Any]) -> Binding:
        """The saved arguments bound to `function`'s parameters as they are now, by name."""
        return bind(self.arguments, self.kinds, function)

    def call(self) -> Any:
        """Call the current function with the saved arguments, bound by name.

        Raises:
            CkptError: a parameter it has now has no saved value and no default.
        """
        function = self.function
        binding = self.bind(function)
        if binding.missing:
            raise CkptError(binding.refusal(self.name))
        return function(*binding.args, **binding.kwargs)


def _import_function(location: dict[str, Any]) -> Callable[..., Any] | None:
    module_name = location["module"]
    try:
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
    except Exception:
        return None
    found: Any = module
    for part in location["qualname"].split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    return unwrap(found) if callable(found) else None


def unwrap(function: Any) -> Any:
    """The user's function under our decorator (other decorators are kept)."""
    if isinstance(function, (staticmethod, classmethod)):
        function = function.__func__
    target = getattr(function, "__ckpt_target__", None)
    return target.function if target is not None else function


def _load_values(part: Part, start: int, names: list[str], strict: bool) -> dict[str, Any]:
    values = {}
    for name, record in zip(names, part.records[start:]):
        try:
            values[name] = unpickle_value(record.inband, record.buffers)
        except Exception as exc:
            if strict:
                raise CorruptCheckpointError(
                    f"argument {name!r} cannot be loaded: {type(exc).__name__}: {exc}",
                    hint="a module or class it needs may have been renamed or removed",
                ) from exc
            values[name] = Unpicklable("?", "?", f"cannot be loaded: {type(exc).__name__}: {exc}")
    return values


class Verified(collections.namedtuple("Verified", "entry call error call_detail error_detail")):
    """Both parts of a checkpoint, read whole and verified; nothing unpickled yet."""

    __slots__ = ()
    entry: Entry
    call: Part
    error: Part | None
    call_detail: CallDetail
    error_detail: ErrorDetail | None


def verify_checkpoint(entry: Entry, trust: bool = False) -> Verified:
    """Read both parts of a checkpoint and verify them; unpickle nothing.

    The replay child verifies first, then restores the recorded working directory
    and `sys.path` from the verified header, and only then unpickles (which may
    import the user's modules). With `trust`, nothing is verified: the user vouched.

    Raises:
        CorruptCheckpointError: it is damaged, altered or signed under another key.
    """
    if entry.problem:
        raise CorruptCheckpointError(f"checkpoint {entry.id}: {entry.problem}")
    key = None if trust else load_key(create=False)
    # a blob both hold: read once; one a verification record vouches for: not hashed
    blobs = BlobLoader.of_store(os.path.dirname(entry.call_path), key)
    try:
        call = read_part(entry.call_path, key, blobs)
        error = read_part(entry.error_path, key, blobs) if entry.error_path else None
    finally:
        blobs.close()
    _check_identity(entry, call, error)
    detail = CallDetail.from_json(call.detail)
    detail.check_shown_as(Summary.from_json(call.summary))
    return Verified(entry, call, error, detail,
                    ErrorDetail.from_json(error.detail) if error is not None else None)


def read_checkpoint(entry: Entry, trust: bool = False, device: str | None = None) -> Checkpoint:
    """Read, verify and unpickle a checkpoint from its store entry.

    With `trust`, a checkpoint that does not verify under this user's key is
    loaded anyway: the user vouched for it. Tensors go to `device` (see
    `unpickle_checkpoint`).
    """
    return unpickle_checkpoint(verify_checkpoint(entry, trust), device)


def unpickle_checkpoint(verified: Verified, device: str | None = None) -> Checkpoint:
    """The checkpoint's values, unpickled from parts that verified.

    Tensors go to `device`; by default to the device they were captured on, or to the
    CPU (said in one line on stderr) where this machine has no such device.

    Raises:
        CkptError: `device` is not one torch has here.
    """
    from .tensors import loading_on

    entry, call, detail = verified.entry, verified.call, verified.call_detail
    names = [argument.name for argument in detail.arguments]
    chosen = usable_device(device)
    with loading_on(chosen) as notices:
        checkpoint = Checkpoint(
            id=entry.id, name=entry.name, trigger=entry.trigger, created=entry.created,
            arguments=_load_values(call, 1, names, strict=True),
            kinds={argument.name: argument.kind or "positional_or_keyword"
                   for argument in detail.arguments},
            frames=_load_frames(verified.error, verified.error_detail),
            exception=_exception(verified.error_detail),
            metadata=dict(detail.metadata), location=detail.location._asdict(),
            function_pickle=call.records[0].inband if call.records else None,
        )
    checkpoint._device, checkpoint._told = chosen, set(notices)
    for notice in notices:
        print(f"note: {notice}", file=sys.stderr)
    return checkpoint


def usable_device(device: str | None) -> str | None:
    """`device` as torch spells it, once torch has made a tensor there; None stays None.

    Without torch only ``cpu`` is known (where CuPy and JAX arrays can always go).

    Raises:
        CkptError: torch is not installed (for a device but the CPU), or does not know
            or cannot use `device` here.
    """
    if device is None:
        return None
    from .tensors import check_device

    try:
        return check_device(device)
    except ValueError as exc:
        if device == "cpu" and isinstance(exc.__cause__, ImportError):
            return device  # no torch, so no tensor: CuPy and JAX arrays go to the CPU
        raise CkptError(f"device {device}: {exc}",
                        hint="use cpu, or a device this machine has (cuda, cuda:N)") from exc


def _check_identity(entry: Entry, call: Part, error: Part | None) -> None:
    """The tagged headers must name this checkpoint: files cannot be swapped or renamed."""
    if error is not None and error.summary.get("call_tag") != call.tag.hex():
        raise CorruptCheckpointError(f"checkpoint {entry.id}: its two parts do not belong together")
    check_signed_names(entry, Summary.from_json(call.summary),
                       Summary.from_json(error.summary) if error is not None else None)


def _exception(error: ErrorDetail | None) -> ExceptionSummary | None:
    if error is None:
        return None
    exc = error.exception
    return ExceptionSummary(exc.type, exc.message, exc.traceback)


def _load_frames(error: Part | None, detail: ErrorDetail | None) -> list[Frame]:
    if error is None or detail is None:
        return []
    frames, start = [], 0
    for frame in detail.frames:
        names = [local.name for local in frame.locals]
        values = _load_values(error, start, names, strict=False)
        start += len(names)
        frames.append(Frame(frame.function, frame.file, frame.line, values))
    return frames


def load(name_or_id: str | None = None, *,
         directory: str | os.PathLike[str] | None = None,
         device: str | None = None) -> Checkpoint:
    """Load a checkpoint: by id, by name (the newest), or the newest of all.

    Args:
        name_or_id: a checkpoint's name, id or id prefix; None for the newest.
        directory: the store to read (default: the store this process would use).
        device: where saved torch tensors (and so modules) go: ``cpu``, ``cuda``,
            ``cuda:N``. Default: the device they were captured on, or the CPU (with
            a one-line notice on stderr) where this machine has none such.

    Raises:
        CkptError: nothing matches, the checkpoint is corrupt or untrusted, or
            `device` is not available.
    """
    store = Store(find_store_path(os.fspath(directory) if directory is not None else None))
    entry = store.find(name_or_id)
    if not entry.problem:  # a URL's is copied, its blobs cached (one that is not is refused)
        _, entry = store.local(entry)
    return read_checkpoint(entry, device=device)


def checkpoints(*, directory: str | os.PathLike[str] | None = None) -> list[Entry]:
    """Every checkpoint in the store, oldest first and newest last (nothing unpickled)."""
    store = Store(find_store_path(os.fspath(directory) if directory is not None else None))
    return store.entries()
