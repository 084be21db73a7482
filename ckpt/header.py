"""The header schema of a checkpoint part, once: typed, frozen records and their JSON.

Every header field anything acts on or shows is read through these records, and
only from a header whose tag verified (see `fileformat`). Parsing checks every
field's type, so a header that verifies but is malformed (a bug, an old writer)
is a clear error, never a crash further on. namedtuples, not dataclasses: the
dataclasses module costs every `cdip` command ~15 ms to import.
"""

from __future__ import annotations

import collections

from .errors import CorruptCheckpointError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_MISSING = object()


class MalformedHeader(CorruptCheckpointError):
    """A header whose fields are not what the schema says."""

    def __init__(self, what: str) -> None:
        super().__init__(f"malformed header: {what}", reason=f"malformed header ({what})")


def _field(data: dict[str, Any], name: str, kinds: type | tuple[type, ...],
           default: Any = _MISSING) -> Any:
    value = data.get(name, default)
    if type(value) is kinds:  # the usual case, at once: listing checks 7 fields per file
        return value
    if value is _MISSING:
        raise MalformedHeader(f"no {name!r}")
    if value is default:
        return value
    allowed = kinds if isinstance(kinds, tuple) else (kinds,)
    # bool is an int to isinstance; a flag where a number belongs is malformed all the same
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise MalformedHeader(f"{name!r} is a {type(value).__name__}")
    return value


def _object(data: object, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise MalformedHeader(f"{what} is not an object")
    return data


def _strings(data: dict[str, Any], name: str) -> list[str]:
    values = _field(data, name, list, [])
    if not all(isinstance(value, str) for value in values):
        raise MalformedHeader(f"{name!r} holds a non-string")
    return list(values)


def _json(record: tuple[Any, ...]) -> dict[str, Any]:
    """A record as JSON-ready data: nested records too; None fields left out."""
    fields = record._fields  # type: ignore[attr-defined]
    return {name: _plain(value) for name, value in zip(fields, record) if value is not None}


# Every save turns its headers into JSON: the common leaves are told by their exact type
# first (`hasattr` on each of them raised and caught an AttributeError inside).
_LEAVES = frozenset({str, int, float, bool, type(None), dict})


def _plain(value: Any) -> Any:
    if type(value) in _LEAVES:
        return value
    if hasattr(value, "_asdict"):
        return _json(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


class ExceptionLine(collections.namedtuple("ExceptionLine", "type message")):
    """What a call raised, in the one line listing shows."""

    __slots__ = ()
    type: str
    message: str

    @classmethod
    def from_json(cls, data: object) -> ExceptionLine:
        """Parse and check."""
        data = _object(data, "exception")
        return cls(_field(data, "type", str), _field(data, "message", str, ""))


class Worker(collections.namedtuple(
        "Worker", "dask_name dask_address ray_worker ray_node rank local_rank world_size "
        "slurm_job slurm_task", defaults=(None, None, None, None, None, None, None, None, None))):
    """The cluster worker that ran a call (see `workers.identity`); every field optional.

    Attributes:
        dask_name, dask_address: the Dask worker's name and address.
        ray_worker, ray_node: the Ray worker's and node's ids (hex).
        rank, local_rank, world_size: torch.distributed's (RANK...), or Slurm's
            SLURM_PROCID... for a multi-task step.
        slurm_job, slurm_task: SLURM_ARRAY_JOB_ID (else SLURM_JOB_ID), SLURM_ARRAY_TASK_ID.
    """

    __slots__ = ()
    dask_name: str | None
    dask_address: str | None
    ray_worker: str | None
    ray_node: str | None
    rank: int | None
    local_rank: int | None
    world_size: int | None
    slurm_job: str | None
    slurm_task: str | None

    @classmethod
    def from_json(cls, data: object) -> Worker:
        """Parse and check."""
        data = _object(data, "the worker")
        return cls(**{name: _field(data, name, int if name in _WORKER_NUMBERS else str, None)
                      for name in cls._fields})

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to disk (fields that are None left out)."""
        return _json(self)


_WORKER_NUMBERS = ("rank", "local_rank", "world_size")


class Summary(collections.namedtuple(
        "Summary", "part id name stamp trigger function exception call_tag worker",
        defaults=(None,))):
    """The small header listing reads: what the part is and which checkpoint it belongs to.

    Attributes:
        part: ``call`` or ``error``.
        id: the checkpoint's id.
        name: the name it is filed under.
        stamp: nanoseconds since the epoch of the call (None before format 3).
        trigger: what saved the call part: ``call``, or ``error`` when it was written
            only because the call raised (its error part then completes it).
        function: ``module:qualname``.
        exception: (error part) what the call raised.
        call_tag: (error part) the tag of the call part it completes, hex.
        worker: (call part) the cluster worker that ran the call, if any (files
            written before it read as None).
    """

    __slots__ = ()
    part: str
    id: str
    name: str
    stamp: int | None
    trigger: str
    function: str
    exception: ExceptionLine | None
    call_tag: str | None
    worker: Worker | None

    @classmethod
    def from_json(cls, data: object) -> Summary:
        """Parse and check a summary header."""
        data = _object(data, "the summary")
        part = _field(data, "part", str, "call")
        if part not in ("call", "error"):
            raise MalformedHeader(f"part {part!r}")
        exception = data.get("exception")
        return cls(
            part=part, id=_field(data, "id", str), name=_field(data, "name", str),
            stamp=_field(data, "stamp", int, None),
            trigger=_field(data, "trigger", str, part),
            function=_field(data, "function", str, ""),
            exception=ExceptionLine.from_json(exception) if exception is not None else None,
            call_tag=_field(data, "call_tag", str, None),
            worker=Worker.from_json(data["worker"]) if "worker" in data else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to disk."""
        return _json(self)


class Location(collections.namedtuple(
        "Location", "module qualname file line source_hash file_hash main coroutine")):
    """How the function is found again: module, qualified name, file and source hashes."""

    __slots__ = ()
    module: str
    qualname: str
    file: str | None
    line: int | None
    source_hash: str | None
    file_hash: str | None
    main: bool
    coroutine: bool

    @classmethod
    def from_json(cls, data: object) -> Location:
        """Parse and check."""
        data = _object(data, "the function's location")
        return cls(
            module=_field(data, "module", str), qualname=_field(data, "qualname", str),
            file=_field(data, "file", str, None), line=_field(data, "line", int, None),
            source_hash=_field(data, "source_hash", str, None),
            file_hash=_field(data, "file_hash", str, None),
            main=_field(data, "main", bool, False),
            coroutine=_field(data, "coroutine", bool, False),
        )


class ValueInfo(collections.namedtuple(
        "ValueInfo", "name kind type repr shape dtype len unpicklable redacted device columns "
        "requires_grad parameters", defaults=(None, None, None, None))):
    """What `cdip info` shows of one saved value, without unpickling it.

    `device` (a tensor's, or the devices of a torch module's parameters), `columns`
    (a data frame's first columns, each ``{"name", "dtype"}``), `requires_grad` (a
    tensor's) and `parameters` (a torch module's count of parameter elements) are
    optional: files written before them read as None.
    """

    __slots__ = ()
    name: str
    kind: str | None
    type: str
    repr: str
    shape: list[int] | None
    dtype: str | None
    len: int | None
    unpicklable: str | None
    redacted: bool | None
    device: str | None
    columns: list[dict[str, str]] | None
    requires_grad: bool | None
    parameters: int | None

    @classmethod
    def from_json(cls, data: object) -> ValueInfo:
        """Parse and check."""
        data = _object(data, "a value's description")
        shape = _field(data, "shape", list, None)
        if shape is not None and not all(isinstance(n, int) for n in shape):
            raise MalformedHeader("a shape holds a non-integer")
        return cls(
            name=_field(data, "name", str), kind=_field(data, "kind", str, None),
            type=_field(data, "type", str, "?"), repr=_field(data, "repr", str, ""),
            shape=shape, dtype=_field(data, "dtype", str, None), len=_field(data, "len", int, None),
            unpicklable=_field(data, "unpicklable", str, None),
            redacted=_field(data, "redacted", bool, None),
            device=_field(data, "device", str, None), columns=_columns(data),
            requires_grad=_field(data, "requires_grad", bool, None),
            parameters=_field(data, "parameters", int, None),
        )

    @classmethod
    def of(cls, name: str, kind: str | None, description: dict[str, Any]) -> ValueInfo:
        """The record of a value named `name`, from `values.describe`'s description."""
        return cls(name, kind, description.get("type", "?"), description.get("repr", ""),
                   description.get("shape"), description.get("dtype"), description.get("len"),
                   description.get("unpicklable"), description.get("redacted"),
                   description.get("device"), description.get("columns"),
                   description.get("requires_grad"), description.get("parameters"))

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to disk."""
        return _json(self)


def _columns(data: dict[str, Any]) -> list[dict[str, str]] | None:
    columns = _field(data, "columns", list, None)
    if columns is not None and not all(
            isinstance(column, dict) and isinstance(column.get("name"), str)
            and isinstance(column.get("dtype"), str) for column in columns):
        raise MalformedHeader("a column is not a name and a dtype")
    return None if columns is None else [
        {"name": column["name"], "dtype": column["dtype"]} for column in columns]


def _values(data: dict[str, Any], name: str) -> tuple[ValueInfo, ...]:
    return tuple(ValueInfo.from_json(item) for item in _field(data, name, list, []))


# The metadata fields, in the order `cdip info` shows them.
METADATA_FIELDS = ("host", "user", "pid", "python", "implementation", "executable",
                   "platform", "cwd", "argv", "path", "packages", "git_commit", "git_dirty")


class CallDetail(collections.namedtuple("CallDetail", "location arguments metadata")):
    """The call part's detail header: where the function is, its arguments, the process.

    `metadata` stays a dict of checked fields (host, pid, executable, cwd, argv,
    path, packages, git state...): it is shown and compared, and only `cwd`,
    `path`, `argv` and `executable` are acted on, each checked here.
    """

    __slots__ = ()
    location: Location
    arguments: tuple[ValueInfo, ...]
    metadata: dict[str, Any]

    @classmethod
    def from_json(cls, data: object) -> CallDetail:
        """Parse and check a call part's detail header."""
        data = _object(data, "the detail header")
        return cls(Location.from_json(data.get("function")), _values(data, "arguments"),
                   _metadata(_object(data.get("metadata", {}), "the metadata")))

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to disk."""
        return {"function": _json(self.location), "arguments": _plain(self.arguments),
                "metadata": self.metadata}

    def check_shown_as(self, summary: Summary) -> None:
        """The function listing shows must be the one a replay calls.

        Raises:
            MalformedHeader: the summary names another function than the location.
        """
        if summary.function != f"{self.location.module}:{self.location.qualname}":
            raise MalformedHeader("the summary names another function than the detail")


def _metadata(data: dict[str, Any]) -> dict[str, Any]:
    checked = dict(data)
    for name in ("cwd", "executable", "host", "user", "python", "platform"):
        _field(data, name, str, None)
    _field(data, "pid", int, None)
    checked["argv"] = _strings(data, "argv")
    checked["path"] = _strings(data, "path")
    packages = _field(data, "packages", dict, {})
    if not all(isinstance(v, str) for v in packages.values()):
        raise MalformedHeader("a package version is not a string")
    _field(data, "git_commit", str, None)
    return checked


class ExceptionInfo(collections.namedtuple("ExceptionInfo", "type message traceback")):
    """What the call raised, with its formatted traceback."""

    __slots__ = ()
    type: str
    message: str
    traceback: str


# Code objects that are no function one can call again (`cdip run --frame N`), and what
# they are: the replay refuses them, and `--watch` before its first round.
NOT_FUNCTIONS = {"<module>": "a module's top level", "<lambda>": "a lambda",
                 "<genexpr>": "a generator expression", "<listcomp>": "a list comprehension",
                 "<dictcomp>": "a dict comprehension", "<setcomp>": "a set comprehension"}


class FrameInfo(collections.namedtuple(
        "FrameInfo", "function qualname file line locals module main source_hash file_hash "
        "parameters reassigned", defaults=(None, None, None, None, None, None))):
    """One saved frame: where it was, and its locals' descriptions.

    What re-calls the frame's function (`cdip run --frame N`) is optional: files
    written before it read as None. `module` and `main` find it as `Location` does;
    `source_hash`/`file_hash` tell whether it changed; `parameters` are its code's
    ``[name, kind]`` at capture; `reassigned` the parameters its body assigns to.
    """

    __slots__ = ()
    function: str
    qualname: str
    file: str
    line: int
    locals: tuple[ValueInfo, ...]
    module: str | None
    main: bool | None
    source_hash: str | None
    file_hash: str | None
    parameters: list[list[str]] | None
    reassigned: list[str] | None

    @classmethod
    def from_json(cls, data: object) -> FrameInfo:
        """Parse and check."""
        data = _object(data, "a frame")
        function = _field(data, "function", str)
        parameters = _field(data, "parameters", list, None)
        if parameters is not None and not all(
                isinstance(pair, list) and len(pair) == 2
                and all(isinstance(part, str) for part in pair) for pair in parameters):
            raise MalformedHeader("a frame's parameter is not a name and a kind")
        return cls(function, _field(data, "qualname", str, function), _field(data, "file", str),
                   _field(data, "line", int), _values(data, "locals"),
                   _field(data, "module", str, None), _field(data, "main", bool, None),
                   _field(data, "source_hash", str, None), _field(data, "file_hash", str, None),
                   parameters, _strings(data, "reassigned") if "reassigned" in data else None)


class ErrorDetail(collections.namedtuple(
        "ErrorDetail", "exception duration frames module_source")):
    """The error part's detail header: the exception, each frame's locals, the module source."""

    __slots__ = ()
    exception: ExceptionInfo
    duration: float | None
    frames: tuple[FrameInfo, ...]
    module_source: str | None

    @classmethod
    def from_json(cls, data: object) -> ErrorDetail:
        """Parse and check an error part's detail header."""
        data = _object(data, "the detail header")
        exc = _object(data.get("exception"), "exception")
        exception = ExceptionInfo(_field(exc, "type", str), _field(exc, "message", str, ""),
                                  _field(exc, "traceback", str, ""))
        frames = tuple(FrameInfo.from_json(f) for f in _field(data, "frames", list, []))
        return cls(exception, _field(data, "duration", (int, float), None), frames,
                   _field(data, "module_source", str, None))

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to disk."""
        return {"exception": _json(self.exception), "duration": self.duration,
                "frames": _plain(self.frames), "module_source": self.module_source}
