"""Retention: which checkpoints and leftovers go, by `keep`, the byte budget and `cdip gc`.

Only what verifies counts and goes: a file planted in the store must never push
the user's own checkpoints out. Leftovers go only when provably dead.

Blobs (`ckpt.blobs`) are reference-counted by the parts themselves: a blob goes
once no part of the store, published or being written, names it in its header.
Every deletion of checkpoints (`cdip rm`, `clear`, `gc`, `keep`, the budget) ends
with `release_blobs` over the blobs they held.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Collection

from .backend import HOST, PID_NS, TEMP_PREFIX, discard
from .errors import CkptError
from .fileformat import blob_refs, held_blobs, read_summary
from .store import CALL_SUFFIX, ERROR_SUFFIX, Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Call parts this process found to verify (or signed itself), by (path, inode, size, mtime),
# with the blobs their verified summary names: see `_verifies`.
# (None: its blob list is malformed, so `held_blobs` is asked when it goes.)
_verified: dict[tuple[str, int, int, int], tuple[str, ...] | None] = {}


def orphans(store: Store, min_age: float = 60.0) -> list[str]:
    """Error parts whose call part is gone (older than `min_age` seconds).

    A call part saved only for an error is renamed into place just after its
    error part: a young orphan may be such a write, still under way.
    """
    parts = list(store.scan())
    calls = {part[4][: -len(CALL_SUFFIX)] for part in parts if part[3] == CALL_SUFFIX}
    found = []
    for _, _, _, suffix, filename in parts:
        if suffix != ERROR_SUFFIX or filename[: -len(ERROR_SUFFIX)] in calls:
            continue
        info = store.backend.stat(filename)
        if info is None:
            continue
        if time.time() - info.mtime >= min_age:
            found.append(store.path_of(filename))
    return found


def prune(store: Store, key: str, keep: int, protect: Collection[str] = ()) -> list[str]:
    """Delete all but the newest `keep` checkpoints of a name; return the deleted ids.

    Ids in `protect` (just written, or still in a call) are never deleted.
    Only checkpoints whose summary verifies count and go: a file planted under
    the name's key with a far-future time must not push the user's own out.
    """
    parts: dict[str, list[tuple[int, str]]] = {}
    for _, stamp, checkpoint_id, _, filename in store.scan(store.named(key)):
        parts.setdefault(checkpoint_id, []).append((stamp, filename))
    newest_first = sorted(parts, key=lambda i: (parts[i][0][0], i), reverse=True)
    kept, doomed = 0, []
    for checkpoint_id in newest_first:
        if checkpoint_id in protect:
            kept += 1
        elif not _verifies(store, parts[checkpoint_id]):
            continue
        elif kept < keep:
            kept += 1
        else:
            doomed.append(checkpoint_id)
    held: set[str] = set()
    for checkpoint_id in doomed:
        for _, filename in parts[checkpoint_id]:
            held.update(_held(store, filename))
            store.backend.delete(filename)
    release_blobs(store, held)
    return doomed


def referenced(store: Store) -> set[str]:
    """Every blob a part of the store names, or a temporary being written (unverified).

    Unverified on purpose: a reference only ever keeps a blob, so a part that
    does not verify here (signed elsewhere, damaged) keeps its blobs until it
    goes itself. A temporary names its blobs before it claims them.
    """
    found: set[str] = set()
    # a remote write in progress names its blobs only once its part is published:
    # its writer checks them then (`Store.settle`)
    writing = [] if store.remote else [write.name for write in store.backend.unfinished()]
    parts = [name for name in store.listdir() if name.endswith((CALL_SUFFIX, ERROR_SUFFIX))]
    store.prefetch(parts)
    for filename in parts + writing:
        found.update(held_blobs(store.readable(filename)))
    return found


def release_blobs(store: Store, candidates: Collection[str] | None = None) -> int:
    """Remove the blobs among `candidates` (default: all) that no part names; return bytes freed.

    Safe against a writer reusing one meanwhile: see `Blobs.remove`.
    """
    blobs = store.blobs
    if candidates is None:
        candidates = list(blobs.ids())
    if not candidates and not os.path.isdir(blobs.root):
        return 0
    # Reading every part's header is asked for only with candidates to keep: a prune
    # that frees no blob (every small save's) still lets `remove` settle leftovers.
    wanted = referenced(store) if candidates else set()
    return blobs.remove([blob for blob in candidates if blob not in wanted],
                        lambda: referenced(store))

def _verifies(store: Store, files: list[tuple[int, str]]) -> bool:
    """Whether a checkpoint's call part (among `files`) has a summary that verifies.

    Every save prunes its name, so each file is verified once per process and
    then known by its inode, size and time (a file replaced since is read again).
    """
    calls = [filename for _, filename in files if filename.endswith(CALL_SUFFIX)]
    if len(calls) != 1:
        return False
    try:
        path = store.readable(calls[0])
        identity = _identity(path, os.lstat(path))
        if identity in _verified:
            return True
        summary = read_summary(path, store.reading_key())
    except (OSError, CkptError):
        return False
    _remember(identity, _blob_ids(summary))
    return True


def _blob_ids(summary: dict[str, Any]) -> tuple[str, ...] | None:
    try:
        return tuple(blob for blob, _ in blob_refs(summary))
    except CkptError:
        return None


def _identity(path: str, info: os.stat_result) -> tuple[str, int, int, int]:
    return (path, info.st_ino, info.st_size, info.st_mtime_ns)


def _remember(identity: tuple[str, int, int, int], blobs: tuple[str, ...] | None) -> None:
    if len(_verified) > 10_000:
        _verified.clear()
    _verified[identity] = blobs


def signed_here(path: str, info: os.stat_result, blobs: tuple[str, ...]) -> None:
    """A part this process just wrote and signed, now at `path` (`info`: its fstat).

    It verifies by construction: the next save's prune need not read it back to
    know (nor, once it goes, to know its blobs). A file put in its place later has
    another inode or time, and is read again. Kept as `_verifies` keeps what it read.
    """
    _remember(_identity(path, info), blobs)


def _held(store: Store, filename: str) -> tuple[str, ...] | list[str]:
    """The blobs a part being deleted holds: from its verified summary when known here.

    Saves reading its header once more (`held_blobs`) on every prune.
    """
    if not store.remote:
        path = store.path_of(filename)
        try:
            known = _verified.get(_identity(path, os.lstat(path)))
        except OSError:
            known = None
        if known is not None:
            return known
    return held_blobs(store.readable(filename))

def _sized_parts(store: Store) -> list[tuple[int, str, str, int]]:
    parts = []
    for _, stamp, checkpoint_id, _, filename in store.scan():
        size = store.part_size(filename)  # a link to a huge file elsewhere weighs nothing
        if size is not None:
            parts.append((stamp, checkpoint_id, store.path_of(filename), size))
    return parts

def store_size(store: Store) -> int:
    """The bytes the store's parts and blobs hold, each blob counted once."""
    return sum(size for *_, size in _sized_parts(store)) + store.blobs.total()


def enforce_budget(store: Store, max_bytes: int, protect: Collection[str] = ()) -> int:
    """Delete the oldest checkpoints until the store fits `max_bytes`.

    Each blob counts once; deleting a checkpoint frees its parts and the blobs
    no other part holds. Never deletes ids in `protect` (the checkpoint just
    written, calls still running). Returns the bytes the store holds afterwards.
    """
    parts = _sized_parts(store)
    blob_sizes = store.blobs.sizes()
    total = sum(size for *_, size in parts) + sum(blob_sizes.values())
    if total <= max_bytes:
        return total
    by_id: dict[str, list[tuple[int, str, int]]] = {}
    for stamp, checkpoint_id, path, size in parts:
        by_id.setdefault(checkpoint_id, []).append((stamp, path, size))
    store.prefetch([os.path.basename(path) for _, _, path, _ in parts] if blob_sizes else [])
    holds = {checkpoint_id: {blob for _, path, _ in files
                             for blob in held_blobs(store.readable(os.path.basename(path)))}
             for checkpoint_id, files in by_id.items()} if blob_sizes else {}
    holders: dict[str, int] = {}
    for blobs in holds.values():
        for blob in blobs:
            holders[blob] = holders.get(blob, 0) + 1
    freed = {blob for blob in blob_sizes if blob not in holders}  # left by an interrupted save
    total -= sum(blob_sizes[blob] for blob in freed)
    for checkpoint_id, files in sorted(by_id.items(), key=lambda item: item[1][0][0]):
        if total <= max_bytes:
            break
        if checkpoint_id in protect:
            continue
        for _, path, size in files:
            store.backend.delete(os.path.basename(path))
            total -= size
        for blob in holds.get(checkpoint_id, ()):
            holders[blob] -= 1
            if not holders[blob]:
                freed.add(blob)
                total -= blob_sizes.get(blob, 0)
    if freed:
        release_blobs(store, freed)
    return total

def stale_temporaries(store: Store) -> list[str]:
    """Leftovers of interrupted writes: temporaries whose writer is provably gone.

    The writer is known by host, PID namespace and pid: only one of this host
    and namespace whose pid is dead is gone for sure. Any other (another
    machine on a shared store, a container with the same host name) is only
    presumed gone after a day without a write.
    """
    stale = []
    writes = [(store.path_of(write.name), write.started) for write in store.backend.unfinished()]
    for path in [] if store.remote else list(store.blobs.temporaries()):
        try:
            writes.append((path, os.lstat(path).st_mtime))
        except OSError:
            continue
    for path, started in writes:
        filename = os.path.basename(path)
        pid_text, _, rest = filename[len(TEMP_PREFIX) :].partition("-")
        host, _, namespace = rest.partition("-")[2].partition("@")
        age = time.time() - started
        if host == HOST and namespace in (PID_NS, ""):  # "": named before format 3
            gone = not _pid_alive(int(pid_text) if _DIGITS.fullmatch(pid_text) else -1)
        else:
            gone = age > 86400
        if gone:
            stale.append(path)
    return stale


def remove_leftovers(store: Store, paths: Collection[str]) -> None:
    """Remove what `stale_temporaries` and `orphans` found (remote: abort the uploads)."""
    if not store.remote:
        for path in paths:
            discard(path)
        return
    doomed = {os.path.basename(path) for path in paths}
    for write in store.backend.unfinished():
        if os.path.basename(write.name) in doomed:  # a blob's upload: blobs/<family>/<id>
            store.backend.abort_unfinished(write)
    for name in doomed:
        if name.endswith(ERROR_SUFFIX):
            store.backend.delete(name)


_DIGITS = re.compile(r"[0-9]{1,12}")  # ASCII only: str.isdigit() takes '²' too


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: no pid is that large
        return False
    except PermissionError:
        return True
    return True
