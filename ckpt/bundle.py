"""Portable bundles: `cdip export` packs checkpoints into one file, `cdip import` adopts them.

A bundle is a tar file: `manifest.json` (what it holds, readable without
unpickling anything, with a SHA-256 of every file), `manifest.sha256`, and the
checkpoint files as they were signed by the exporter. Each call part carries the
source of its function's module at capture, so the importer sees what changed.
A bundle proves its integrity (a truncated or altered file is refused), not who
made it: importing is the user's deliberate decision to trust it, after which
its checkpoints are signed again under the importer's own key.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CkptError, CorruptCheckpointError
from .fileformat import read_part, verify_part
from .keys import load_key
from .store import CALL_SUFFIX, ERROR_SUFFIX, Entry, Store, name_key, new_id

BUNDLE_FORMAT = "ckpt-bundle"
BUNDLE_VERSION = 1


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def export(entries: list[Entry], output: str | os.PathLike[str]) -> int:
    """Write `entries` (verified under this user's key first) into one bundle file."""
    output = Path(output)
    key = load_key(create=False)
    described = []
    for entry in entries:
        if entry.problem:
            raise CorruptCheckpointError(f"checkpoint {entry.id} cannot be exported: "
                                         f"{entry.problem}")
        for path in entry.paths:
            verify_part(path, key)
        described.append({
            "id": entry.id, "name": entry.name, "trigger": entry.trigger,
            "created": entry.created, "stamp": entry.stamp,
            "function": entry.function,
            "exception": (entry.error_summary.exception._asdict()
                          if entry.error_summary and entry.error_summary.exception else None),
            "files": [{"name": os.path.basename(path), "size": os.stat(path).st_size,
                       "sha256": _sha256(path)} for path in entry.paths],
        })
    manifest = json.dumps({
        "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "created": time.time(),
        "host": socket.gethostname(), "checkpoints": described,
    }, indent=1).encode()
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(temporary, "w") as tar:
            _add_bytes(tar, "manifest.json", manifest)
            _add_bytes(tar, "manifest.sha256", hashlib.sha256(manifest).hexdigest().encode())
            for entry in entries:
                for path in entry.paths:
                    tar.add(path, arcname=f"checkpoints/{os.path.basename(path)}")
        os.replace(temporary, output)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return len(entries)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _damaged(path: Path, what: str) -> CkptError:
    return CkptError(f"the bundle {path} is damaged: {what}",
                     hint="export it again, and copy it whole (as a binary file)")


@dataclass
class Bundle:
    """An opened, integrity-checked bundle, extracted to a private directory."""

    path: Path
    manifest: dict[str, Any]
    directory: Path

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        """What the manifest says each checkpoint is."""
        return list(self.manifest["checkpoints"])


def open_bundle(path: Path, workdir: Path) -> Bundle:
    """Extract a bundle into `workdir` and check every file against the manifest.

    Raises:
        CkptError: the bundle is missing, truncated, altered or not a bundle.
    """
    try:
        with tarfile.open(path, "r:") as tar:
            members = {member.name: member for member in tar.getmembers()}
            manifest_bytes = _read_member(tar, members, "manifest.json", path)
            digest = _read_member(tar, members, "manifest.sha256", path).decode().strip()
            if hashlib.sha256(manifest_bytes).hexdigest() != digest:
                raise _damaged(path, "its manifest does not match its digest")
            manifest = json.loads(manifest_bytes)
            if manifest.get("format") != BUNDLE_FORMAT:
                raise _damaged(path, "it is not a ckpt bundle")
            if manifest.get("version") != BUNDLE_VERSION:
                raise CkptError(f"{path} is a version {manifest.get('version')} bundle; "
                                f"this ckpt reads version {BUNDLE_VERSION}")
            for checkpoint in manifest["checkpoints"]:
                for file in checkpoint["files"]:
                    _extract(tar, members, file, workdir, path)
    except FileNotFoundError as exc:
        raise CkptError(f"no bundle at {path}") from exc
    except (tarfile.TarError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise _damaged(path, f"{type(exc).__name__}: {exc}") from exc
    return Bundle(path, manifest, workdir)


def _read_member(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str,
                 path: Path) -> bytes:
    member = members.get(name)
    stream = tar.extractfile(member) if member is not None else None
    if stream is None:
        raise _damaged(path, f"{name} is missing")
    return stream.read()


def _extract(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], file: dict[str, Any],
             workdir: Path, path: Path) -> None:
    name = os.path.basename(file["name"])  # never a path out of workdir
    member = members.get(f"checkpoints/{name}")
    stream = tar.extractfile(member) if member is not None else None
    if stream is None:
        raise _damaged(path, f"{name} is missing")
    digest = hashlib.sha256()
    with open(workdir / name, "wb") as out:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != file["sha256"]:
        raise _damaged(path, f"{name} does not match the manifest (altered or truncated)")


def adopt(bundle: Bundle, store: Store) -> list[tuple[str, str]]:
    """Sign the bundle's checkpoints with this user's key into `store`.

    Every file is parsed first (nothing unpickled), so a malformed one stops
    the import before anything is written. Returns (old id, new id) pairs; an
    id that already exists here gets a fresh one.
    """
    parsed = []
    for checkpoint in bundle.checkpoints:
        parts = [read_part(str(bundle.directory / os.path.basename(f["name"])), key=None)
                 for f in checkpoint["files"]]
        parts.sort(key=lambda part: part.summary.get("part") != "call")  # the call part first
        parsed.append((checkpoint, parts))
    existing = {entry.id for entry in store.entries()}
    adopted = []
    for checkpoint, parts in parsed:
        old_id = checkpoint["id"]
        checkpoint_id = old_id if old_id not in existing else new_id()
        existing.add(checkpoint_id)
        key, stamp = name_key(checkpoint["name"]), int(checkpoint["stamp"])
        call_tag = b""
        for part in parts:
            summary = {**part.summary, "id": checkpoint_id}
            suffix = CALL_SUFFIX if summary.get("part") == "call" else ERROR_SUFFIX
            if suffix == ERROR_SUFFIX:
                summary["call_tag"] = call_tag.hex()
            final = store.filename(key, stamp, checkpoint_id, suffix)
            tag, _ = store.write_part(final, summary, part.detail, part.records)
            call_tag = tag if suffix == CALL_SUFFIX else call_tag
        adopted.append((old_id, checkpoint_id))
    return adopted


def import_bundle(path: str | os.PathLike[str], store: Store,
                  confirm: Any) -> list[tuple[str, str]]:
    """Open, show (via `confirm`), then adopt a bundle; [] if the user declined."""
    with tempfile.TemporaryDirectory(prefix="ckpt-import-") as workdir:
        bundle = open_bundle(Path(path), Path(workdir))
        if not confirm(bundle):
            return []
        return adopt(bundle, store)
