"""Pickling one value on its own, and describing it without unpickling it later."""

from __future__ import annotations

import collections
import pickle
import reprlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

REPR_LIMIT = 80
_short = reprlib.Repr()
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
    """What `cdip info` shows of a value: type, shape or length, a short repr."""
    description: dict[str, Any] = {"type": type_name(value), "repr": short_repr(value)}
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
        description["shape"] = list(shape)
        dtype = getattr(value, "dtype", None)
        if dtype is not None:
            description["dtype"] = str(dtype)
    elif isinstance(value, (str, bytes, bytearray, list, tuple, dict, set, frozenset)):
        description["len"] = len(value)
    if isinstance(value, Unpicklable):
        description["unpicklable"] = value.error
    return description


class Pickled(collections.namedtuple("Pickled", "inband buffers description")):
    """A value pickled with protocol 5: the in-band bytes and the raw buffers."""

    __slots__ = ()
    inband: bytes
    buffers: list[memoryview]
    description: dict[str, Any]


def pickle_value(value: Any) -> Pickled:
    """Pickle one value, or a placeholder saying why it could not be pickled.

    Large buffers (numpy arrays, bytes-likes) stay out of band: they are
    written later straight from the object's memory, never copied here.
    """
    import cloudpickle

    description = describe(value)
    buffers: list[pickle.PickleBuffer] = []
    try:
        inband = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        views = [buffer.raw() for buffer in buffers]
    except Exception as exc:  # any failure of a user's __reduce__ becomes a placeholder
        placeholder = Unpicklable(description["type"], description["repr"], _reason(exc))
        description["unpicklable"] = placeholder.error
        return Pickled(pickle.dumps(placeholder, protocol=5), [], description)
    return Pickled(inband, views, description)


def _reason(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    if len(message) > 160:
        message = message[:157] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def unpickle_value(inband: bytes, buffers: list[Any]) -> Any:
    """Rebuild a value pickled by `pickle_value`."""
    return pickle.loads(inband, buffers=buffers)
