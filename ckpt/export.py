"""`cdip export`: checkpoints, verified and optionally redacted, packed into one private bundle.

The bundle's layout is `bundle`'s (the reading side); this module writes it:
each part written afresh from its verified content under the exporter's key,
with `--redact`ed values replaced by placeholders (nothing is unpickled to do
so), then one tar file created privately (mode 0600, a random name, no link
followed) and renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shutil
import socket
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .blobread import BlobLoader
from .blobs import Blobs
from .bundle import (
    BLOBS,
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    CHUNK,
    DIGEST,
    MANIFEST,
    PARTS,
    descriptions,
)
from .display import printable
from .errors import CkptError, CorruptCheckpointError
from .fileformat import Part, Record, read_part, write_stream
from .keys import load_key
from .store import Entry, discard
from .values import Redacted, Redaction

REDACTED = "<redacted>"


@dataclass(frozen=True)
class Value:
    """One argument or local a bundle carries: its name and type, and whether redacted."""

    name: str
    type: str
    redacted: bool


@dataclass(frozen=True)
class Exported:
    """What one exported checkpoint carries, read from its verified headers."""

    id: str
    name: str
    trigger: str
    arguments: list[Value]
    frames: list[tuple[str, list[Value]]]  # (qualname, locals) of each saved frame

    @property
    def values(self) -> list[Value]:
        """Every argument and local, in order."""
        return self.arguments + [value for _, values in self.frames for value in values]


def export(entries: list[Entry], output: str | os.PathLike[str],
           redact: tuple[str, ...] = ()) -> list[Exported]:
    """Write `entries`, verified under this user's key, into one bundle file.

    Values of arguments and locals whose names match a `redact` glob are
    replaced by placeholders in the bundle (the store keeps them); nothing is
    unpickled to do so. The bundle is created privately (mode 0600, a random
    temporary name, no link followed) and renamed onto `output`.

    Raises:
        CkptError: a checkpoint does not verify, or the bundle cannot be written.
    """
    output = Path(output)
    key = load_key(create=False)
    redaction = Redaction(redact)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".ckpt-export-", dir=output.parent))
    except OSError as exc:
        raise CkptError(f"cannot write {printable(output)}: {exc.strerror}") from exc
    try:
        manifest, carried = [], []
        for entry in entries:
            described, exported = _stage_checkpoint(entry, key, staging, redaction)
            manifest.append(described)
            carried.append(exported)
        blobs = Blobs(str(staging))  # each buffer once, however many parts hold it
        _write_bundle(output, _manifest_bytes(manifest, blobs), staging, blobs)
    except OSError as exc:
        where = printable(exc.filename or output)
        raise CkptError(f"cannot export to {printable(output)}: {where}: {exc.strerror}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return carried


def carried_lines(carried: list[Exported]) -> list[str]:
    """What the exported checkpoints carry, for people: each one's values by name and type."""
    def listed(values: list[Value]) -> str:
        return ", ".join(printable(f"{value.name}: {value.type}")
                         + (" [redacted]" if value.redacted else "") for value in values)

    lines = []
    for item in carried:
        lines += [f"  {printable(item.id)}  {printable(item.name)} ({item.trigger})",
                  f"    arguments: {listed(item.arguments) or '(none)'}"]
        lines += [f"    locals of {printable(qualname)}: {listed(values) or '(none)'}"
                  for qualname, values in item.frames]
    lines.append("  each also carries its function's code, the exception message and "
                 "traceback, the module's source, and where it ran (host, user, cwd, argv, "
                 "sys.path); --redact replaces values by name only, none of these, nor keys "
                 "inside a **kwargs")
    return lines


def unmatched(carried: list[Exported], patterns: list[str]) -> list[str]:
    """The --redact patterns that matched no value (a typo would let a secret leave)."""
    names = {value.name for item in carried for value in item.values}
    return [p for p in patterns if not any(map(Redaction([p]).covers, names))]


def _stage_checkpoint(entry: Entry, key: bytes, staging: Path, redaction: Redaction,
                      ) -> tuple[dict[str, Any], Exported]:
    """Verify, redact and re-write one checkpoint's parts into `staging`."""
    if entry.problem:
        raise CorruptCheckpointError(f"checkpoint {entry.id} cannot be exported: {entry.problem}")
    loader = BlobLoader.of_store(os.path.dirname(entry.call_path))
    call = read_part(entry.call_path, key, loader)
    summary = call.summary = {"stamp": entry.stamp, **call.summary}  # formats 1, 2: none
    arguments = _redact(call, redaction)
    call_tag = _write_part(staging / os.path.basename(entry.call_path), call, key)
    del call  # its buffers: one part in memory at a time
    frames: list[tuple[str, list[Value]]] = []
    exception = None
    if entry.error_path is not None:
        error = read_part(entry.error_path, key, loader)
        # the call part it completes was written afresh: its tag is a new one
        error.summary = {"stamp": entry.stamp, **error.summary, "call_tag": call_tag.hex()}
        locals_ = _redact(error, redaction)
        frames = [(str(frame.get("qualname")), locals_[start:end])
                  for frame, start, end in _frame_spans(error.detail)]
        exception = error.summary.get("exception")
        _write_part(staging / os.path.basename(entry.error_path), error, key)
    loader.close()
    trigger = "error" if entry.error_path is not None else str(summary.get("trigger"))
    described = {
        "id": summary.get("id"), "name": summary.get("name"), "trigger": trigger,
        "created": entry.stamp / 1e9, "stamp": entry.stamp, "function": summary.get("function"),
        "exception": exception, "files": [_file_record(staging, path) for path in entry.paths],
    }
    exported = Exported(str(summary.get("id")), str(summary.get("name")), trigger, arguments,
                        frames)
    return described, exported


def _frame_spans(detail: dict[str, Any]) -> list[tuple[dict[str, Any], int, int]]:
    """Each frame with the range of its locals among the error part's records."""
    spans, start = [], 0
    for frame in detail.get("frames", []):
        spans.append((frame, start, start + len(frame["locals"])))
        start += len(frame["locals"])
    return spans


def _redact(part: Part, redaction: Redaction) -> list[Value]:
    """Replace the records whose names `redaction` covers by placeholders, in place.

    The placeholder (a `Redacted`, as the decorator's own ``redact=`` stores) is
    pickled here, from a value we build: nothing of the user's is unpickled. Its
    description says only the name, kind and type. Returns what the part carries
    now, argument or local, in record order.
    """
    carried = []
    for index, description in enumerate(descriptions(part)):
        if description is None:
            continue
        name, type_name = description["name"], str(description.get("type", "?"))
        if redaction.covers(name):
            part.records[index] = Record(pickle.dumps(Redacted(type_name), protocol=5))
            kept: dict[str, Any] = {k: description[k] for k in ("name", "kind") if k in description}
            description.clear()
            description.update(kept, type=type_name, repr=REDACTED, redacted=True)
        carried.append(Value(name, type_name, description.get("redacted") is True))
    return carried


def _write_part(path: Path, part: Part, key: bytes) -> bytes:
    """Write `part` afresh, signed under `key`, to a new file; return its tag.

    Its large buffers go to the staging folder's blobs (a redacted value's are
    left behind), each once.
    """
    with open(path, "xb") as stream:
        return write_stream(stream, key, part.summary, part.detail, part.records,
                            Blobs(str(path.parent)))[0]


def _file_record(staging: Path, path: str) -> dict[str, Any]:
    staged = staging / os.path.basename(path)
    return {"name": staged.name, "size": staged.stat().st_size, "sha256": file_sha256(staged)}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, in hex, read a chunk at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest_bytes(checkpoints: list[dict[str, Any]], blobs: Blobs) -> bytes:
    listed = [{"id": blob, "size": blobs.size(blob)} for blob in sorted(blobs.ids())]
    return json.dumps({
        "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "created": time.time(),
        "host": socket.gethostname(), "checkpoints": checkpoints, "blobs": listed,
    }, indent=1).encode()


def _write_bundle(output: Path, manifest: bytes, staging: Path, blobs: Blobs) -> None:
    """Write the tar file: created exclusively under a random name, mode 0600, then renamed.

    In a shared directory a predictable temporary name could be a link planted
    by someone else; `mkstemp` creates a new file (O_EXCL) that no one else can
    read, and `os.replace` replaces a link at `output` rather than following it.
    """
    fd, temporary = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp",
                                     dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as stream, \
                tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add(tar, MANIFEST, io.BytesIO(manifest), len(manifest))
            digest = hashlib.sha256(manifest).hexdigest().encode()
            _add(tar, DIGEST, io.BytesIO(digest), len(digest))
            for path in sorted(staging.iterdir()):
                if path.is_file():
                    with open(path, "rb") as part:
                        _add(tar, PARTS + path.name, part, path.stat().st_size)
            for blob in sorted(blobs.ids()):
                fd = blobs.open(blob)
                with os.fdopen(fd, "rb") as blob_file:
                    _add(tar, BLOBS + blob, blob_file, os.fstat(fd).st_size)
        os.replace(temporary, output)
    except BaseException:
        discard(temporary)
        raise


def _add(tar: tarfile.TarFile, name: str, data: IO[bytes], size: int) -> None:
    # A member says nothing of the exporter's account: no owner, a private mode.
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, int(time.time())
    tar.addfile(info, data)


