"""Pickling one value on its own, and describing it without unpickling it later."""

from __future__ import annotations

import builtins
import collections
import pickle
import reprlib
import sys
import threading
import time
import weakref

# Both small and standard-library only, imported here rather than on the first save:
# an import in the saving thread is a module lock that a fork in another thread can
# leave held in the child (see guest._SAVING_NEEDS).
from . import gpuarrays, script_classes, streamed, tables, tensors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import IO, Any, Callable

REPR_LIMIT = 80
# An exception's message is kept up to this many characters (its traceback text too).
MESSAGE_LIMIT = 16 * 1024
# A type whose repr took longer than this (seconds) is not asked again in this process.
SLOW_REPR = 0.1


class _ShortRepr(reprlib.Repr):
    """reprlib's limits on containers, and a guard on the reprs the user wrote.

    A repr runs on the saving thread and cannot be interrupted: one that never
    returns stalls the save, as it would stall their own `print`. What can be
    bounded is bounded: each value is described once per save; a type whose
    repr took longer than `SLOW_REPR` is described by its name from then on; a
    repr of any length is cut to `REPR_LIMIT` characters at once.
    """

    def repr_instance(self, x: Any, level: int) -> str:
        kind = type(x)
        if kind in _slow_types:
            return f"<{type_name(x)}: repr skipped, it was slow>"
        started = time.perf_counter()
        try:
            text = builtins.repr(x)
        except Exception as exc:  # a user's __repr__ may fail; describing must not
            text = f"<{kind.__name__} object; repr failed: {type(exc).__name__}>"
        finally:
            if time.perf_counter() - started > SLOW_REPR:
                _slow_types.add(kind)
        if len(text) > self.maxother:
            text = text[: self.maxother - 3] + "..."
        return text


_slow_types: weakref.WeakSet[type] = weakref.WeakSet()
_short = _ShortRepr()
_short.maxstring = REPR_LIMIT
_short.maxother = REPR_LIMIT
_short.maxlist = _short.maxtuple = _short.maxset = _short.maxdict = 6


class Unpicklable:
    """Stands in for a value that could not be pickled (or unpickled).

    Attributes:
        type: the value's type, as ``module.QualName``.
        repr: a short repr of the value.
        error: why it could not be kept.
    """

    def __init__(self, type: str, repr: str, error: str) -> None:
        self.type = type
        self.repr = repr
        self.error = error

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unpicklable) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((self.type, self.repr, self.error))

    def __repr__(self) -> str:
        return f"<unpicklable {self.type}: {self.repr} ({self.error})>"


class Redacted:
    """Stands in for a value that was never stored: its name is one to redact.

    The names come from ``@ckpt.ckpt(redact=[...])`` and `PYCKPT_REDACT`. Of the
    value only its type was looked at: it was neither pickled nor repr'd.

    Attributes:
        type: the value's type, as ``module.QualName``.
    """

    def __init__(self, type: str) -> None:
        self.type = type

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Redacted) and self.type == other.type

    def __hash__(self) -> int:
        return hash(("redacted", self.type))

    def __repr__(self) -> str:
        return f"<redacted {self.type}>"


def type_name(value: Any) -> str:
    """``module.QualName`` of the value's type (builtins unqualified)."""
    kind = type(value)
    module = getattr(kind, "__module__", "?")
    qualname = getattr(kind, "__qualname__", kind.__name__)
    return qualname if module == "builtins" else f"{module}.{qualname}"


def short_repr(value: Any) -> str:
    """A one-line repr of at most about 80 characters; never raises."""
    try:
        text = _short.repr(value)
    except Exception as exc:  # a user's __repr__ may fail; describing must not
        text = f"<{type_name(value)}; repr failed: {type(exc).__name__}>"
    text = " ".join(line.strip() for line in text.splitlines())  # one line, inner spaces kept
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."


def describe(value: Any) -> dict[str, Any]:
    """What `cdip info` shows of a value: type, shape or length, a short repr.

    Never raises: a `shape`, `dtype` or `__len__` that fails leaves out only itself.
    """
    if isinstance(value, Redacted):
        return {"type": value.type, "repr": "<redacted>", "redacted": True}
    fixtures = sys.modules.get("ckpt.fixtures")  # only that module makes the marker
    if fixtures is not None and isinstance(value, fixtures.Fixture):  # a test's capsys...
        return {"type": value.type, "repr": repr(value)}
    description: dict[str, Any] = {"type": type_name(value), "repr": short_repr(value)}
    for add in (_add_size, _add_device, _add_columns, _add_torch, tables.add_arrow_array):
        try:
            add(value, description)
        except Exception:  # noqa: S110 (a user's property or __len__ may fail)
            pass
    if isinstance(value, Unpicklable):
        description["unpicklable"] = value.error
    return description


def _add_size(value: Any, description: dict[str, Any]) -> None:
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
        description["shape"] = list(shape)
        dtype = getattr(value, "dtype", None)
        if dtype is not None:
            description["dtype"] = str(dtype)
    elif isinstance(value, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
        description["len"] = len(value)


# Of a data frame's columns, `cdip info` shows this many (name and dtype); its shape
# says how many there are in all.
COLUMNS_SHOWN = 50


def _add_device(value: Any, description: dict[str, Any]) -> None:
    """A tensor's device (``cpu``, ``cuda:0``); read by attribute, torch never imported.

    numpy arrays have a `device` too (always ``cpu``, for the array API): left out.
    """
    if "shape" not in description or type(value).__module__.partition(".")[0] == "numpy":
        return
    device = getattr(value, "device", None)
    if device is not None and not callable(device):
        description["device"] = str(device)[:40]


def _add_columns(value: Any, description: dict[str, Any]) -> None:
    """A data frame's first columns, name and dtype (pandas, polars, pyarrow: by attribute)."""
    kind = type(value)  # looked up on the type: an instance's __getattr__ is never asked
    if len(description.get("shape", ())) != 2:
        return
    if hasattr(kind, "columns") and hasattr(kind, "dtypes"):  # pandas, polars
        names, dtypes = value.columns, value.dtypes
    elif hasattr(kind, "schema") and hasattr(kind, "column_names"):  # pyarrow tables, batches
        names, dtypes = value.schema.names, value.schema.types
    else:
        return
    import itertools

    pairs = itertools.islice(zip(names, dtypes), COLUMNS_SHOWN)
    description["columns"] = [
        {"name": (name if isinstance(name, str) else short_repr(name))[:REPR_LIMIT],
         "dtype": str(dtype)[:40]}
        for name, dtype in pairs]


def _add_torch(value: Any, description: dict[str, Any]) -> None:
    """A tensor's `requires_grad`; a torch module's parameter count and device.

    torch is looked up, never imported: a value of its types means it is loaded.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if isinstance(value, torch.Tensor):
        description["requires_grad"] = bool(value.requires_grad)
    elif isinstance(value, torch.nn.Module):
        import itertools

        description["parameters"] = sum(int(p.numel()) for p in value.parameters())
        devices = {str(t.device) for t in itertools.chain(value.parameters(), value.buffers())}
        if devices:
            description["device"] = ", ".join(sorted(devices))[:40]


class Pickled(collections.namedtuple("Pickled", "inband buffers description")):
    """A value pickled with protocol 5: the in-band bytes and the raw buffers."""

    __slots__ = ()
    inband: bytes
    buffers: list[memoryview | streamed.StreamedBuffer]
    description: dict[str, Any]


# Within one save, each object is pickled (and repr'd) once, however many times it
# appears: an argument is also a local of the frame that raised.
_memo = threading.local()


def begin_save() -> None:
    """Start remembering what this thread pickles (a save begins)."""
    _memo.records = {}


def end_save() -> None:
    """Forget it again (the save ended): the objects may change from now on."""
    _memo.records = None


def pickle_value(value: Any) -> Pickled:
    """Pickle one value, or a placeholder saying why it could not be pickled.

    Large buffers (numpy arrays, bytes-likes) stay out of band: they are
    written later straight from the object's memory, never copied here.
    """
    records: dict[int, tuple[Any, Pickled]] | None = getattr(_memo, "records", None)
    if records is not None and id(value) in records:
        return records[id(value)][1]
    pickled = _pickle(value)
    if records is not None:
        records[id(value)] = (value, pickled)  # the value kept alive: its id stays its own
    return pickled


def _pickle(value: Any) -> Pickled:
    description = describe(value)
    if isinstance(value, Redacted):
        return Pickled(pickle.dumps(value, protocol=5), [], description)
    buffers: list[pickle.PickleBuffer] = []
    try:
        inband = _dumps(value, buffers.append)
        # a GPU tensor's storage stays where it is until written (`ckpt.streamed`)
        views = [streamed.behind(buffer.raw()) for buffer in buffers]
    except Exception as exc:  # any failure of a user's __reduce__ becomes a placeholder
        placeholder = Unpicklable(description["type"], description["repr"], _reason(exc))
        description["unpicklable"] = placeholder.error
        return Pickled(pickle.dumps(placeholder, protocol=5), [], description)
    return Pickled(inband, views, description)


def pickle_whole(value: Any) -> bytes:
    """Pickle one value, its buffers in band, or a placeholder saying why it could not be.

    For the copy of a function saved by value: a closure's captured arrays stay with it.
    """
    try:
        return _dumps(value, None)
    except Exception as exc:  # any failure of a user's __reduce__ becomes a placeholder
        placeholder = Unpicklable(type_name(value), short_repr(value), _reason(exc))
        return pickle.dumps(placeholder, protocol=5)


def _dumps(value: Any, buffer_callback: Callable[[pickle.PickleBuffer], Any] | None) -> bytes:
    import io

    with io.BytesIO() as file:
        _pickler()(file, protocol=5, buffer_callback=buffer_callback).dump(value)
        return file.getvalue()


# The pickler class made over each base `script_classes.pickler` hands out.
_picklers: dict[type[pickle.Pickler], type[pickle.Pickler]] = {}


def _pickler() -> type[pickle.Pickler]:
    """The pickler of `script_classes.pickler`, with torch tensors sent out of band.

    torch's own reducer serialises each storage into a byte string in memory: a
    second copy of every tensor, which the out-of-band path never sees. Here a
    tensor becomes its storage's raw bytes, a `pickle.PickleBuffer` like a numpy
    array's (`ckpt.tensors`, imported only once a value's type is torch's).
    """
    base = script_classes.pickler()
    made = _picklers.get(base)
    if made is None:

        class Pickler(base):  # type: ignore[valid-type,misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._storages: dict[Any, Any] = {}  # one value's tensor storages
                # in band (a function's copy): no tensor's bytes may stay on its device
                self._out_of_band = kwargs.get("buffer_callback") is not None

            def reducer_override(self, obj: Any) -> Any:
                module = type(obj).__module__
                if module.startswith("torch"):
                    reduced = tensors.reduce_tensor(obj, self._storages, self._out_of_band)
                    if reduced is not NotImplemented:
                        return reduced
                elif module.startswith(tables.MODULES):  # frames' parts (`ckpt.tables`)
                    reduced = tables.reduce_table(obj)
                    if reduced is not NotImplemented:
                        return reduced
                elif module.startswith(gpuarrays.MODULES):  # CuPy, JAX (`ckpt.gpuarrays`)
                    reduced = gpuarrays.reduce_array(obj)
                    if reduced is not NotImplemented:
                        return reduced
                return super().reducer_override(obj)

        made = _picklers[base] = Pickler
    return made


def _reason(exc: BaseException) -> str:
    try:
        message = " ".join(str(exc)[:1000].split())
    except Exception:  # a user's __str__ may fail
        message = ""
    if len(message) > 160:
        message = message[:157] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class Redaction:
    """The names whose values are never stored: `fnmatch` patterns, case-sensitive.

    Args:
        patterns: names or patterns (``password``, ``*_token``, ``api_*``).
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(pattern for pattern in patterns if pattern)
        self._match = _matcher(self.patterns) if self.patterns else None

    def __bool__(self) -> bool:
        return self._match is not None

    def covers(self, name: str) -> bool:
        """Whether the value named `name` must not be stored."""
        return self._match is not None and self._match(name) is not None

    def apply(self, name: str, value: Any, keywords: bool = False) -> Any:
        """`value`, or what is stored in its place.

        That is a `Redacted` when `name` is covered; for a ``**kwargs`` dict
        (`keywords`), a copy whose covered keys hold one.
        """
        if self._match is None:
            return value
        if self.covers(name):
            return Redacted(type_name(value))
        if keywords and isinstance(value, dict) and any(
                isinstance(key, str) and self.covers(key) for key in value):
            return {key: Redacted(type_name(item))
                    if isinstance(key, str) and self.covers(key) else item
                    for key, item in value.items()}
        return value


def _matcher(patterns: tuple[str, ...]) -> Callable[[str], Any]:
    import fnmatch
    import re

    return re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns)).match


def var_keyword_name(code: Any) -> str | None:
    """The name of a code object's ``**kwargs`` parameter, if it has one."""
    flags = getattr(code, "co_flags", 0)
    if not flags & 0x08:  # inspect.CO_VARKEYWORDS
        return None
    index = code.co_argcount + code.co_kwonlyargcount + bool(flags & 0x04)  # CO_VARARGS
    names = code.co_varnames
    return str(names[index]) if index < len(names) else None


# cloudpickle rebuilds a class pickled by value through these; the argument at the
# index is the class's tracker id (the same in cloudpickle 2.2 to 3.1).
_CLASS_MAKERS = {"_make_skeleton_class": 4, "_make_skeleton_enum": 5}


class _Unpickler(pickle.Unpickler):
    """Unpickles without ever changing a class that lives in this process (see below)."""

    def __init__(self, file: IO[bytes], buffers: Iterable[Any]) -> None:
        super().__init__(file, buffers=buffers)
        self._live: list[type] = []

    def find_class(self, module: str, name: str) -> Any:
        try:
            found = super().find_class(module, name)
        except ModuleNotFoundError as exc:  # pyarrow not here: say which package to install
            missing = tables.missing_library(exc)
            if missing is None:
                raise
            raise missing from exc
        if not module.startswith("cloudpickle"):
            return found
        if name in _CLASS_MAKERS:
            return self._noting_live(found, _CLASS_MAKERS[name])
        if name == "_class_setstate":
            return self._sparing_live(found)
        return found

    def _noting_live(self, make: Callable[..., Any], position: int) -> Callable[..., Any]:
        def made(*args: Any) -> Any:
            tracked = getattr(sys.modules.get("cloudpickle.cloudpickle"),
                              "_DYNAMIC_CLASS_TRACKER_BY_ID", {})
            live = tracked.get(args[position]) if len(args) > position else None
            cls = make(*args)
            if live is not None and cls is live:
                self._live.append(cls)
            return cls

        return made

    def _sparing_live(self, setstate: Callable[..., Any]) -> Callable[..., Any]:
        def set_unless_live(obj: Any, state: Any) -> Any:
            if any(obj is live for live in self._live):
                return obj
            return setstate(obj, state)

        return set_unless_live


def unpickle_value(inband: bytes, buffers: list[Any]) -> Any:
    """Rebuild a value pickled by `pickle_value`; never change a live object.

    cloudpickle rebuilds a class pickled by value (defined in ``__main__``, a
    notebook or a function) as the class of the same identity when this process
    has it, and then overwrites that class's attributes with the saved ones: a
    `ckpt.load()` in the notebook that defined the class would rebind its methods
    to stale copies. Here such a class is used as it is now, untouched.
    """
    import io

    return _Unpickler(io.BytesIO(inband), buffers).load()
