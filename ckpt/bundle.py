"""Portable bundles: `cdip export` packs checkpoints into one file, `cdip import` adopts them.

A bundle is a tar file: `manifest.json` (an index of what it holds, with the
size and SHA-256 of every file), `manifest.sha256`, the checkpoint parts,
written afresh from their verified content under the exporter's key (with any
`--redact`ed values replaced by placeholders), and (version 2) `blobs/<id>`:
each large buffer the parts hold, once (its id is its content's digest, which
every read checks). Each error part carries the
source of its function's module at capture, so the importer sees what changed.

A bundle proves its integrity (a truncated or altered file is refused), not who
made it: importing is the user's deliberate decision to trust it, after which
its checkpoints are signed again under the importer's own key. Everything in a
bundle is untrusted input until then: what the importer is shown is read from
the parts themselves (the manifest is only an index, and must agree with them),
every size is bounded from the tar headers before anything is extracted, and
nothing reaches the store unless every checkpoint was written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import math
import os
import re
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from .blobs import Blobs, is_id
from .display import human_size, printable
from .errors import CkptError, CorruptCheckpointError
from .fileformat import Part, read_headers, read_part
from .header import CallDetail, ErrorDetail, Summary
from .retention import release_blobs
from .store import CALL_SUFFIX, ERROR_SUFFIX, Store, discard, name_key, new_id
from .target import configured_max_bytes

BUNDLE_FORMAT = "ckpt-bundle"
BUNDLE_VERSION = 2
READABLE_BUNDLES = (1, 2)  # 1: no blobs
MANIFEST = "manifest.json"
DIGEST = "manifest.sha256"
PARTS = "checkpoints/"
BLOBS = "blobs/"
MAX_MANIFEST = 4 << 20
MAX_CHECKPOINTS = 10_000
MAX_BLOBS = 2 * MAX_CHECKPOINTS * 64  # buffers of 1 MiB or more, each listed once
MAX_NAME = 4096
# A checkpoint's time (ns since the epoch) must lie in 2000..2100: anything else is no
# capture of ours, and would break the store's file names or every date shown.
FIRST_STAMP = 946_684_800 * 10**9
LAST_STAMP = 4_102_444_800 * 10**9

_ID = re.compile(r"[0-9a-f]{12}")  # what store.new_id makes
# A part's file name in the store (as store._PART_NAME), and in a bundle: a plain name
_PART_FILE = re.compile(r"([^~]+)~([0-9]+)~([^~.]+)(\.call|\.error)")
_MEMBER = re.compile(r"[A-Za-z0-9_.~-]{1,240}\.(call|error)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
CHUNK = 1 << 20
# While tar headers are scanned no read may exceed this: tarfile reads a GNU long
# name or a pax header whole, as large as a crafted header declares (gigabytes of
# memory), and older Pythons parse pax records in time quadratic in their size
# (CVE-2024-6232). Ours need a few hundred bytes.
_HEADER_READ = 4096


# --- import: reading a bundle -----------------------------------------------------------


def descriptions(part: Part) -> list[dict[str, Any] | None]:
    """Each record's description, in record order (None for the function's copy).

    A call part's records are the function's copy, then each argument; an error
    part's are the locals of every frame in order.
    """
    detail = part.detail
    try:
        if part.summary.get("part", "call") == "call":
            found: list[Any] = [None, *detail["arguments"]]
        else:
            found = [local for frame in detail["frames"] for local in frame["locals"]]
    except (KeyError, TypeError) as exc:
        raise CorruptCheckpointError(
            f"checkpoint {quoted(part.summary.get('id'))}: unreadable descriptions") from exc
    if len(found) != len(part.records) or not all(
            item is None or (isinstance(item, dict) and isinstance(item.get("name"), str))
            for item in found):
        raise CorruptCheckpointError(
            f"checkpoint {quoted(part.summary.get('id'))}: its headers do not describe its "
            "records")
    return found


def quoted(value: object) -> str:
    """A value from a bundle, quoted for a message: escaped, so it cannot drive the terminal."""
    return printable(repr(value))


def _damaged(path: Path, what: str) -> CkptError:
    return CkptError(f"the bundle {printable(path)} is damaged: {what}",
                     hint="export it again, and copy it whole (as a binary file)")


class _Refused(Exception):
    """A bundle that is not what `cdip export` writes: why, for the message."""


class _Damaged(Exception):
    """A bundle that is truncated or altered: why, for the message."""


@dataclass(frozen=True)
class BundledCheckpoint:
    """One checkpoint of a bundle, as its own parts' headers describe it.

    Attributes:
        id: the id its parts carry (a fresh one is chosen here if it is not one of ours).
        files: its extracted parts, the call part first.
    """

    id: str
    name: str
    trigger: str
    stamp: int
    function: str
    exception: tuple[str, str] | None
    files: tuple[Path, ...]

    @property
    def created(self) -> float:
        """Seconds since the epoch when the call was made."""
        return self.stamp / 1e9

    @property
    def exception_text(self) -> str:
        """'ValueError: bad value', or '' when the call did not raise."""
        if self.exception is None:
            return ""
        kind, message = self.exception
        return f"{kind}: {message}" if message else kind


@dataclass(frozen=True)
class Bundle:
    """An opened bundle: every file extracted to a private directory and checked."""

    path: Path
    host: str
    created: float
    checkpoints: list[BundledCheckpoint]
    directory: Path


def open_bundle(path: Path, workdir: Path) -> Bundle:
    """Check a bundle, extract its parts into `workdir` and read what they are.

    Nothing is extracted before every member's type, name and size were
    checked from the tar headers and against the manifest.

    Raises:
        CkptError: the bundle is missing, truncated, altered, too large, or
            not what `cdip export` writes.
    """
    try:
        with _open_archive(path) as (tar, reader):
            members = _members(tar, reader.size)
            reader.limit = CHUNK
            manifest = _read_manifest(tar, members)
            for entry in manifest["checkpoints"]:
                for file in entry["files"]:
                    _extract(tar, members[PARTS + file["name"]], file, workdir)
            blobs = Blobs(str(workdir))
            for blob in manifest.get("blobs", []):
                _extract_blob(tar, members[BLOBS + blob["id"]], blobs)
        checkpoints = [_bundled(entry, workdir) for entry in manifest["checkpoints"]]
    except _Damaged as exc:
        raise _damaged(path, str(exc)) from exc
    except _Refused as exc:
        raise CkptError(f"the bundle {printable(path)} is refused: {exc}",
                        hint="it is not what `cdip export` writes: ask for a fresh export"
                        ) from exc
    return Bundle(path, manifest["host"], manifest["created"], checkpoints, workdir)


class _Capped:
    """The bundle file as tarfile reads it: never past its end, never much at once."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.size = os.fstat(stream.fileno()).st_size
        self.limit = _HEADER_READ

    def read(self, size: int | None = -1) -> bytes:
        """At most `size` bytes, and never more than `limit` at once."""
        left = max(self.size - self._stream.tell(), 0)
        wanted = left if size is None or size < 0 else min(size, left)
        if wanted > self.limit:
            raise _Refused(f"it has a tar header extension of {human_size(wanted)}")
        return self._stream.read(wanted)

    def write(self, data: bytes) -> int:
        """Refused: a bundle is only read."""
        raise io.UnsupportedOperation("read only")

    def seek(self, offset: int, whence: int = 0) -> int:
        """As the file's seek."""
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        """As the file's tell."""
        return self._stream.tell()

    def close(self) -> None:
        """Close the file."""
        self._stream.close()


@contextlib.contextmanager
def _open_archive(path: Path) -> Iterator[tuple[tarfile.TarFile, _Capped]]:
    """Open a bundle as an uncompressed tar file (nothing to inflate), its reads capped."""
    try:
        # O_NONBLOCK: opening a FIFO would wait for a writer; it is refused below instead
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as exc:
        raise CkptError(f"no bundle at {printable(path)}") from exc
    except OSError as exc:
        raise CkptError(f"cannot read {printable(path)}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CkptError(f"{printable(path)} is not a file")
    with os.fdopen(fd, "rb") as stream:
        reader = _Capped(stream)
        with _tar_errors():
            tar = tarfile.open(fileobj=reader, mode="r:")
        with tar:
            yield tar, reader


@contextlib.contextmanager
def _tar_errors() -> Iterator[None]:
    """Turn tarfile's many failures on crafted input into one: a damaged bundle."""
    try:
        yield
    except (_Refused, _Damaged):
        raise
    except Exception as exc:
        raise _Damaged(f"{type(exc).__name__}: {printable(exc)}") from exc


def _members(tar: tarfile.TarFile, size: int) -> dict[str, tarfile.TarInfo]:
    """Every member, checked from its header alone: type, name, size, and all within budget."""
    members: dict[str, tarfile.TarInfo] = {}
    counts = {"parts": 0, "blobs": 0}
    while True:
        with _tar_errors():
            member = tar.next()
        if member is None:
            break
        name = member.name
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.issparse():
            raise _Refused(f"{quoted(name)} is not a regular file")
        if name in members:
            raise _Refused(f"{quoted(name)} appears twice")
        if name not in (MANIFEST, DIGEST) and not (
                name.startswith(PARTS) and _MEMBER.fullmatch(name[len(PARTS):])) and not (
                name.startswith(BLOBS) and is_id(name[len(BLOBS):])):
            raise _Refused(f"{quoted(name)} is no file of a bundle")
        if member.offset_data + member.size > size:
            raise _Damaged(f"{quoted(name)} is truncated")
        members[name] = member
        # parts and blobs counted apart: 10,000 checkpoints may bring blobs of their own
        kind = "blobs" if name.startswith(BLOBS) else "parts"
        counts[kind] += 1
        if counts["parts"] > 2 + 2 * MAX_CHECKPOINTS:
            raise _Refused(f"it holds more than {MAX_CHECKPOINTS} checkpoints")
        if counts["blobs"] > MAX_BLOBS:
            raise _Refused(f"it holds more than {MAX_BLOBS} blobs")
    _check_sizes(members)
    return members


def _check_sizes(members: dict[str, tarfile.TarInfo]) -> None:
    for name, limit in ((MANIFEST, MAX_MANIFEST), (DIGEST, 256)):
        if name not in members:
            raise _Refused(f"it has no {name}")
        if members[name].size > limit:
            raise _Refused(f"its {name} is {human_size(members[name].size)}, more than "
                           f"{human_size(limit)}")
    total = sum(member.size for name, member in members.items()
                if name.startswith((PARTS, BLOBS)))
    budget = configured_max_bytes()
    if total > budget:
        raise CkptError(
            f"the bundle holds {human_size(total)} of checkpoints, more than the store's "
            f"budget of {human_size(budget)}",
            hint="raise PYCKPT_MAX_BYTES (e.g. PYCKPT_MAX_BYTES=8G) to import it")


def _chunks(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    """A member's bytes, a chunk at a time; exactly its size, or it is damaged."""
    read = 0
    with _tar_errors():
        stream = tar.extractfile(member)
        assert stream is not None  # a regular file, checked
        while chunk := stream.read(CHUNK):
            read += len(chunk)
            yield chunk
    if read != member.size:
        raise _Damaged(f"{quoted(member.name)} is truncated")


def _read_manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> dict[str, Any]:
    """The manifest, checked against its digest, typed, and against the members' sizes."""
    data = b"".join(_chunks(tar, members[MANIFEST]))
    digest = b"".join(_chunks(tar, members[DIGEST])).decode("ascii", "replace").strip()
    if hashlib.sha256(data).hexdigest() != digest:
        raise _Damaged("its manifest does not match its digest")
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _Refused(f"its manifest is not JSON ({type(exc).__name__})") from exc
    _check_manifest(manifest)
    listed = {PARTS + file["name"]: file for entry in manifest["checkpoints"]
              for file in entry["files"]}
    for name in members:
        if name.startswith(PARTS) and name not in listed:
            raise _Refused(f"{quoted(name)} is not in its manifest")
    blobs = {BLOBS + blob["id"]: blob for blob in manifest.get("blobs", [])}
    for name in members:
        if name.startswith(BLOBS) and name not in blobs:
            raise _Refused(f"{quoted(name)} is not in its manifest")
    for name, file in [*listed.items(), *blobs.items()]:
        if name not in members:
            raise _Damaged(f"{quoted(name)} is missing")
        if members[name].size != file["size"]:
            raise _Damaged(f"{quoted(name)} is not of the size its manifest says")
    return dict(manifest)


def _check_manifest(manifest: object) -> None:
    """Every field the import reads has the type it should have."""
    top = _object(manifest, "the manifest")
    if top.get("format") != BUNDLE_FORMAT:
        raise _Refused("it is not a ckpt bundle")
    if top.get("version") not in READABLE_BUNDLES or isinstance(top.get("version"), bool):
        raise CkptError(f"this is a version {printable(top.get('version'))} bundle; this ckpt "
                        f"reads version {BUNDLE_VERSION}", hint="import it with a newer ckpt")
    _time(top.get("created"), "the manifest's time")
    _text(top.get("host"), "the manifest's host")
    checkpoints = top.get("checkpoints")
    if not isinstance(checkpoints, list) or not 0 < len(checkpoints) <= MAX_CHECKPOINTS:
        raise _Refused("its manifest lists no checkpoints, or too many")
    seen: set[str] = set()
    for entry in checkpoints:
        entry = _object(entry, "a manifest entry")
        _text(entry.get("id"), "an id")
        _stamp(entry.get("stamp"))
        files = entry.get("files")
        if not isinstance(files, list) or not 1 <= len(files) <= 2:
            raise _Refused("a manifest entry has no files, or more than two")
        for file in files:
            _check_listed(_object(file, "a listed file"), seen)
    blobs = top.get("blobs", [])
    if not isinstance(blobs, list) or len(blobs) > MAX_BLOBS:
        raise _Refused("its manifest's blobs are not a list")
    for blob in blobs:
        blob = _object(blob, "a listed blob")
        size = blob.get("size")
        if not isinstance(blob.get("id"), str) or not is_id(blob["id"]) or blob["id"] in seen:
            raise _Refused(f"a listed blob {quoted(blob.get('id'))} is not a blob id, or twice")
        seen.add(blob["id"])
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _Refused(f"blob {quoted(blob['id'])} has no size")


def _check_listed(file: dict[str, Any], seen: set[str]) -> None:
    name, size = file.get("name"), file.get("size")
    if not isinstance(name, str) or not _MEMBER.fullmatch(name) or name in seen:
        raise _Refused(f"a listed file name {quoted(name)} is not one of a part, or twice")
    seen.add(name)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _Refused(f"{quoted(name)} has no size")
    if not isinstance(file.get("sha256"), str) or not _SHA256.fullmatch(file["sha256"]):
        raise _Refused(f"{quoted(name)} has no SHA-256")


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Refused(f"{what} is not an object")
    return value


def _text(value: object, what: str, limit: int = MAX_NAME) -> str:
    if not isinstance(value, str) or not value or "\0" in value or len(value) > limit:
        raise _Refused(f"{what} is not a string (or is empty, too long, or holds NUL)")
    return value


def _time(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or not FIRST_STAMP / 1e9 <= value <= LAST_STAMP / 1e9:
        raise _Refused(f"{what} is not a time between 2000 and 2100")
    return float(value)


def _stamp(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (
            FIRST_STAMP <= value <= LAST_STAMP):
        raise _Refused(f"the time {quoted(value)} is not one between 2000 and 2100")
    return value


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, file: dict[str, Any],
             workdir: Path) -> None:
    """Copy one part out of the tar (its size checked already), checking its digest."""
    digest = hashlib.sha256()
    target = workdir / file["name"]  # a plain file name, checked: never a path out of workdir
    try:
        with open(target, "xb") as out:
            for chunk in _chunks(tar, member):
                digest.update(chunk)
                out.write(chunk)
    except OSError as exc:
        raise CkptError(f"cannot extract the bundle into {workdir}: {exc.strerror}",
                        hint="free some space, or point TMPDIR elsewhere") from exc
    if digest.hexdigest() != file["sha256"]:
        raise _Damaged(f"{printable(file['name'])} does not match the manifest "
                       "(altered or truncated)")


def _extract_blob(tar: tarfile.TarFile, member: tarfile.TarInfo, blobs: Blobs) -> None:
    """Copy one blob out of the tar; its bytes are checked against its id when read."""
    try:
        blobs.put_stream(member.name[len(BLOBS):], _chunks(tar, member))
    except OSError as exc:
        raise CkptError(f"cannot extract the bundle: {exc.strerror}",
                        hint="free some space, or point TMPDIR elsewhere") from exc


def _bundled(entry: dict[str, Any], workdir: Path) -> BundledCheckpoint:
    """What one checkpoint is, read from its parts; the manifest entry must agree."""
    files = sorted((workdir / file["name"] for file in entry["files"]),
                   key=lambda file: file.suffix != CALL_SUFFIX)
    if files[0].suffix != CALL_SUFFIX or (len(files) == 2 and files[1].suffix != ERROR_SUFFIX):
        raise _Refused(f"checkpoint {quoted(entry['id'])} has no call part, or two")
    call = _headers(files[0], "call", entry["stamp"])
    error = _headers(files[1], "error", entry["stamp"]) if len(files) == 2 else None
    if error is None and call.trigger == "error":
        raise _Refused("a checkpoint saved on error has lost its error part")
    checkpoint = BundledCheckpoint(
        id=_text(call.id, "an id"), name=_text(call.name, "a name"), stamp=entry["stamp"],
        trigger="error" if error is not None else call.trigger, function=call.function,
        exception=None if error is None or error.exception is None else tuple(error.exception),
        files=tuple(files))
    _agree(checkpoint, entry, [call] + ([error] if error is not None else []))
    return checkpoint


def _headers(path: Path, kind: str, stamp: int) -> Summary:
    """Read a part whole and check its headers (nothing is unpickled; no tag is checked).

    The tag is the exporter's, under a key we do not have: what makes a part
    acceptable here is that it is whole and its headers are what ckpt writes
    (the same typed records `cdip info` and the replay read). That its records
    are the ones its headers describe is checked as it is adopted.
    """
    try:
        raw, detail = read_headers(str(path), None, whole=True)  # no value kept in memory
        summary = Summary.from_json(raw)
        if summary.part != kind or summary.trigger not in ("call", "error"):
            raise _Refused(f"{quoted(path.name)} is not a {kind} part of ours")
        if kind == "call":
            CallDetail.from_json(detail).check_shown_as(summary)  # what is shown is what runs
        else:
            ErrorDetail.from_json(detail)
            if summary.exception is None:
                raise _Refused(f"{quoted(path.name)} says nothing of the exception")
    except CorruptCheckpointError as exc:
        raise _Refused(f"{quoted(path.name)}: {printable(exc.reason)}") from exc
    except RecursionError as exc:
        raise _Refused(f"{quoted(path.name)}: a header nested too deep") from exc
    # The call's time: format 3 signs it as `stamp`; formats 1 and 2 said `created`
    # (seconds, as a float), and in an error part the time of the error instead.
    created = raw.get("created")
    if kind == "call" and summary.stamp is None and created is None:
        raise _Refused(f"{quoted(path.name)} says nothing of when it was taken")
    if (summary.stamp is not None and summary.stamp != stamp) or (kind == "call" and (
            created is not None and abs(_time(created, "a part's time") - stamp / 1e9) > 1e-3)):
        raise _Refused(f"{quoted(path.name)} says another time than its manifest")
    return summary


def _agree(checkpoint: BundledCheckpoint, entry: dict[str, Any], parts: list[Summary]) -> None:
    """Each claim of the manifest must be what the parts say, and the parts must agree."""
    said = {"id": checkpoint.id, "name": checkpoint.name, "trigger": checkpoint.trigger,
            "function": checkpoint.function,
            "exception": None if checkpoint.exception is None else
            dict(zip(("type", "message"), checkpoint.exception))}
    for field, value in said.items():
        if entry.get(field) != value:
            raise _Refused(f"its manifest says another {field} than checkpoint "
                           f"{quoted(checkpoint.id)} itself")
    created = entry.get("created")
    if isinstance(created, bool) or not isinstance(created, (int, float)) or abs(
            created - checkpoint.created) > 1:
        raise _Refused(f"its manifest says another time than checkpoint "
                       f"{quoted(checkpoint.id)} itself")
    for part in parts:
        if (part.id, part.name) != (checkpoint.id, checkpoint.name) or part.function not in (
                "", checkpoint.function):
            raise _Refused(f"the parts of checkpoint {quoted(checkpoint.id)} disagree")


# --- import: adopting ----------------------------------------------------------------


@dataclass(frozen=True)
class Adopted:
    """One checkpoint now in the store: its id in the bundle, its id here, its name."""

    old: str
    new: str
    name: str


def adopt(bundle: Bundle, store: Store) -> list[Adopted]:
    """Sign the bundle's checkpoints with this user's key into `store`, all or none.

    Every part is written under a temporary name first; only when all were
    written are they given their final names, and if anything fails, every file
    written so far is removed. A bundle id that is not one of ours (12 hex
    digits) or already exists here gets a fresh one.
    """
    existing = _ids_in(store)
    staged: list[tuple[str, str]] = []
    adopted = []
    placed = False
    try:
        for checkpoint in bundle.checkpoints:
            new = checkpoint.id
            while not _ID.fullmatch(new) or new in existing:
                new = new_id()
            existing.add(new)
            _stage(checkpoint, new, store, staged)
            adopted.append(Adopted(checkpoint.id, new, checkpoint.name))
        _place_all(staged)
        placed = True
    except OSError as exc:
        raise CkptError(f"cannot write into the store {printable(store.path)}: "
                        f"{exc.strerror}; nothing was imported") from exc
    except CorruptCheckpointError as exc:  # changed since it was opened
        raise _damaged(bundle.path, printable(exc.reason)) from exc
    finally:
        _settle(bundle, store, staged, placed)
    return adopted


def _settle(bundle: Bundle, store: Store, staged: list[tuple[str, str]], placed: bool) -> None:
    """Placed: check the parts' blobs are all there. Else: remove the blobs it put."""
    for temporary, _ in staged:
        if placed:
            store.settle(temporary)
        else:
            store.forget(temporary)
        discard(temporary)  # placed ones were renamed already
    if not placed and staged:  # of the bundle's blobs, those no part of the store holds
        release_blobs(store, list(Blobs(str(bundle.directory)).ids()))


def _ids_in(store: Store) -> set[str]:
    try:
        names = os.listdir(store.path)
    except FileNotFoundError:
        return set()
    return {match.group(3) for match in map(_PART_FILE.fullmatch, names) if match}


def _stage(checkpoint: BundledCheckpoint, new: str, store: Store,
           staged: list[tuple[str, str]]) -> None:
    """Write the parts of one checkpoint, re-signed, to temporary files in the store."""
    key, call_tag = name_key(checkpoint.name), b""
    for path in checkpoint.files:
        part = read_part(str(path), key=None)
        descriptions(part)  # the records are still the ones its headers describe
        suffix = CALL_SUFFIX if path.suffix == CALL_SUFFIX else ERROR_SUFFIX
        # signed with it, the id and time its file name will say (the store checks both)
        summary = {**part.summary, "id": new, "stamp": checkpoint.stamp}
        if suffix == ERROR_SUFFIX:
            summary["call_tag"] = call_tag.hex()
        temporary, call_tag, _ = store.stage_part(summary, part.detail, part.records)
        staged.append((temporary, store.filename(key, checkpoint.stamp, new, suffix)))


def _place_all(staged: list[tuple[str, str]]) -> None:
    """Give every staged part its final name, never over an existing file; or undo all."""
    placed: list[str] = []
    try:
        for temporary, final in staged:
            _place(temporary, final)
            placed.append(final)
    except BaseException:
        for final in placed:
            discard(final)
        raise


# What link(2) says on a file system without hard links (FAT, some network shares)
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK,
             errno.ENOSYS}


def _place(temporary: str, final: str) -> None:
    try:
        os.link(temporary, final)  # fails if `final` exists: no clobbering
    except FileExistsError as exc:
        raise CkptError(f"{final} appeared while importing; nothing was imported",
                        hint="import again") from exc
    except OSError as exc:
        if exc.errno not in _NO_LINKS or os.path.lexists(final):
            raise
        os.replace(temporary, final)  # a file system without hard links
        return
    os.unlink(temporary)


def import_bundle(path: str | os.PathLike[str], store: Store,
                  confirm: Callable[[Bundle], bool]) -> list[Adopted]:
    """Open and check a bundle, show it (via `confirm`), then adopt it; [] if declined."""
    with tempfile.TemporaryDirectory(prefix="ckpt-import-") as workdir:
        bundle = open_bundle(Path(path), Path(workdir))
        if not confirm(bundle):
            return []
        return adopt(bundle, store)
