"""A remote store's local copy: its parts' first bytes for listing, whole checkpoints to replay.

A store at a URL is listed from the first bytes of each part (its signed
summary): fetched once (concurrent ranged GETs), then kept under the user's
cache folder, since a part never changes once published. A kept head is only
bytes: it is verified under the key every time it is read, as a local part is.

A checkpoint shown in detail or replayed is copied whole, with its blobs, into
a local store under the same folder (0700), and read there like any other: its
parts verify under the key, its blobs against their ids as they load. That
store's `blobs/` is the blob cache, content-addressed: a blob fetched once is
reused by every later replay of any checkpoint that holds it. It is bounded by
`PYCKPT_CACHE_MAX_BYTES` (default 10 GiB): the blobs used least recently go
first (a blob in use by a replay is mapped, and its file stays readable).
"""

from __future__ import annotations

import hashlib
import os

from .backend import Backend, discard, temporary_name
from .blobs import DIRECTORY, Blobs
from .fileformat import KEY_ID_SIZE, MAGIC, MAX_SUMMARY, PEEK_SIZE, TAG_SIZE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import IO

    from .bundle import Adopted, Bundle
    from .store import Entry, Store
    from .verified import Records

DEFAULT_CACHE_BYTES = 10 << 30
_SUMMARY_START = len(MAGIC) + 1 + KEY_ID_SIZE  # the summary's length comes here


class Mirror:
    """The local copy of one remote store (its folder need not exist yet)."""

    def __init__(self, url: str) -> None:
        from .location import user_cache_dir

        digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        self.path = os.path.join(user_cache_dir(), "remote", digest)
        self.heads = os.path.join(self.path, "heads")
        self.store_path = os.path.join(self.path, "store")

    def head(self, backend: Backend, name: str) -> str:
        """A local file holding at least the summary of part `name` (fetched if missing)."""
        path = self._head_path(name)
        if not os.path.exists(path):
            self.fetch_heads(backend, [name])
        return path

    def fetch_heads(self, backend: Backend, names: Iterable[str]) -> None:
        """Fetch the heads not kept yet, all at once (one ranged GET each, concurrently).

        A part that cannot be read now keeps no head: its reader gets the error.
        """
        missing = [name for name in names if not os.path.exists(self._head_path(name))]
        if not missing:
            return
        for name, data in backend.heads(missing, PEEK_SIZE).items():
            if isinstance(data, bytes):
                if len(data) == PEEK_SIZE and len(data) < _summary_end(data):
                    data = backend.read(name, 0, _summary_end(data))  # a summary over 8 KiB
                self._keep(name, data)

    def _keep(self, name: str, data: bytes) -> None:
        self._private()
        os.makedirs(self.heads, mode=0o700, exist_ok=True)
        temporary = os.path.join(self.heads, temporary_name())
        with open(temporary, "wb") as stream:
            stream.write(data)
        os.replace(temporary, self._head_path(name))

    def forget(self, names: Iterable[str]) -> None:
        """Drop the heads of parts deleted from the remote store."""
        for name in names:
            try:
                os.unlink(self._head_path(name))
            except FileNotFoundError:
                pass

    def _head_path(self, name: str) -> str:
        """Where part `name`'s head is kept: named by its hash, since the bucket names it.

        An object name can be longer than a local file name may be (1,024 bytes on
        S3, 255 here), or differ only in case on a case-insensitive disk: a part
        planted under such a name must not break the listing or shadow another's head.
        """
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
        return os.path.join(self.heads, digest)

    def local_store(self, trust: bool = False) -> Store:
        """The local store the copied checkpoints are in (the blob cache is its `blobs/`)."""
        from .store import Store

        self._private()
        return Store(self.store_path, trust=trust)

    def _private(self) -> None:
        """Make the copy's folder, 0700: it holds the user's data as a store does.

        A link or another user's folder there is refused, not followed: whoever put
        it there would have us write (and `chmod`) wherever it points.

        Raises:
            CkptError: something other than a directory of this user's is there.
        """
        import stat

        from .errors import CkptError

        os.makedirs(self.path, mode=0o700, exist_ok=True)
        info = os.lstat(self.path)
        if not stat.S_ISDIR(info.st_mode) or (
                hasattr(os, "getuid") and info.st_uid != os.getuid()):
            raise CkptError(f"not using the local copy {self.path}: it is a link, not a "
                            "directory, or another user's",
                            hint="remove it (ckpt makes it again, private)")
        os.chmod(self.path, 0o700)


def copy_checkpoint(source: Store, entry: Entry, target: Store) -> tuple[Entry, int]:
    """Copy a checkpoint of `source` into the local store `target`, blobs first.

    What `target` holds already (the same part, a blob of that id and size) is
    not fetched again. Returns the copy, as `target` reads and verifies it, and
    the bytes fetched.

    Raises:
        CorruptCheckpointError: a part or blob went from `source` since it was listed.
    """
    try:
        return _copy(source, entry, target)
    except FileNotFoundError as exc:
        from .errors import CorruptCheckpointError

        raise CorruptCheckpointError(
            f"checkpoint {entry.id}: a file of it went from {source.path} while it was copied",
            hint="another `cdip rm` or `gc` removed it; `cdip info` lists what is there") from exc


def _copy(source: Store, entry: Entry, target: Store) -> tuple[Entry, int]:
    fetched = 0
    blobs = target.blobs
    records = _records(target)
    for blob, length in entry.blobs or _unverified_blobs(source, entry):
        if _cached(blobs, records, blob, length):
            continue
        with source.backend.open(Blobs.key(blob)) as stream:
            fetched += blobs.put_stream(blob, _chunks(stream, length, entry.id))
    for path in entry.paths:
        name = os.path.basename(path)
        if target.backend.stat(name) is not None:
            continue  # a part never changes once published (and it is verified as read)
        with source.backend.open(name) as stream:
            target.backend.put(name, stream)
        size = target.backend.stat(name)
        fetched += size.size if size is not None else 0
    return target.find(entry.id), fetched


def _records(store: Store) -> Records | None:
    """The verification records of the local copy (None without a key: every check hashes)."""
    from .errors import CkptError
    from .verified import Records

    try:
        key = store.reading_key()
    except CkptError:
        key = None
    return Records.of(store.path, key)


def _cached(blobs: Blobs, records: Records | None, blob: str, length: int) -> bool:
    """Whether the cache holds the blob, sound; a cached copy that is not is dropped.

    Sound: a verification record vouches for its file as it is, or its bytes hash
    to its id now (once; then it is recorded). A copy damaged in the cache (a disk,
    a stray write) is fetched again from the store instead of failing every replay
    until the user deletes the cache; a bad copy in the store itself is refused by
    the replay's own check.
    """
    from .blobread import BlobLoader
    from .errors import CorruptCheckpointError

    path = blobs._path(blob)
    try:
        info = os.stat(path)
        if info.st_size != length:
            return False
        if records is None or not records.trusts(blob, info):
            BlobLoader(blobs, records).load(blob, length, keep=False, path=path)
        os.utime(path)  # used now: the cache keeps it longest
    except FileNotFoundError:
        return False
    except (OSError, CorruptCheckpointError):
        discard(path)
        return False
    if records is not None:
        records.record(blob, os.stat(path))  # checked just now; the new times are its own
    return True


def _unverified_blobs(source: Store, entry: Entry) -> list[tuple[str, int]]:
    """The blobs a checkpoint that did not verify names (for `cdip run --trust` only)."""
    from .errors import CorruptCheckpointError
    from .fileformat import blob_refs, read_summary

    refs = []
    for path in entry.paths:
        try:
            refs += blob_refs(read_summary(source.readable(os.path.basename(path)), None))
        except (OSError, CorruptCheckpointError):
            continue  # unreadable: its replay says so
    return refs


def pull(source: Store, names: list[str], target: Store) -> list[tuple[Entry, int]]:
    """Copy checkpoints (by name: its newest; by id or id prefix) into the local `target`.

    Each is verified as `source` lists it, copied blobs first, then read back
    from `target` under the key. Returns each copy with the bytes fetched for it.

    Raises:
        CkptError: `target` is a URL, or the store itself; a name is not found.
    """
    from .errors import CkptError

    if target.remote:
        raise CkptError(f"cannot pull into {target.path}: the target is a URL",
                        hint="--to takes a local directory")
    if os.path.abspath(target.path) == (
            source.path if source.remote else os.path.abspath(source.path)):
        raise CkptError(f"{target.path} is the store they are pulled from",
                        hint="name another with --to DIR (or PYCKPT_DIR/--dir the source)")
    copied = []
    for name in names:
        entry = source.find(name)
        if entry.problem:
            raise CkptError(f"checkpoint {entry.id} cannot be pulled: {entry.problem}",
                            hint="`cdip info` says why; nothing was copied for it")
        copied.append(copy_checkpoint(source, entry, target))
    return copied


def import_bundle(path: str, store: Store, confirm: Callable[[Bundle], bool]) -> list[Adopted]:
    """`cdip import` into any store: a URL's are adopted locally first, then published.

    Adopted (checked, re-signed under this user's key) into a private staging
    store beside the local copy, all or none; then each checkpoint goes up as a
    writer's would: its blobs (those not there), its error part, its call part
    last, so no reader lists it partial.

    Raises:
        CkptError: the bundle is bad, or an id it keeps is in the store already.
    """
    import shutil
    import tempfile

    from . import bundle
    from .errors import CkptError
    from .store import Store

    if not store.remote:
        return bundle.import_bundle(path, store, confirm)
    store.mirror._private()
    staging = tempfile.mkdtemp(prefix="import-", dir=store.mirror.path)
    try:
        local = Store(staging)
        adopted = bundle.import_bundle(path, local, confirm)
        there = {name.rpartition("~")[2].partition(".")[0] for name in store.listdir()}
        for item in adopted:
            if item.new in there:
                raise CkptError(f"checkpoint {item.new} is in {store.path} already; "
                                "nothing was imported", hint="`cdip info` lists it")
        for item in adopted:
            _publish(local, local.find(item.new), store)
        return adopted
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(source: Store, entry: Entry, target: Store) -> None:
    """Upload a local checkpoint into a store at a URL: blobs, then error part, call part last."""
    for blob, _ in entry.blobs:
        with source.backend.open(Blobs.key(blob)) as stream:
            target.backend.put(Blobs.key(blob), stream, exclusive=True)
    for path in reversed(entry.paths):
        with source.backend.open(os.path.basename(path)) as stream:
            target.backend.put(os.path.basename(path), stream)


def trim(store: Store, keep: Iterable[str] = ()) -> None:
    """Bound the blob cache: remove the least recently used blobs until it fits.

    Blobs in `keep` (the replay about to start) never go.
    """
    limit = _cache_limit()
    blobs = store.blobs
    found = []
    for blob in blobs.ids():
        try:
            info = os.lstat(blobs._path(blob))
        except OSError:
            continue
        found.append((info.st_mtime, blob, info.st_size))
    total = sum(size for *_, size in found)
    protected = set(keep)
    for _, blob, size in sorted(found):
        if total <= limit:
            break
        if blob in protected:
            continue
        try:
            os.unlink(blobs._path(blob))
        except OSError:
            continue
        total -= size


def _chunks(stream: IO[bytes], length: int, checkpoint_id: str) -> Iterator[bytes]:
    """A blob's bytes, `length` of them at most: a larger object is refused as it comes.

    The bucket's object may have been swapped since it was listed; whatever its
    size now, no more than the checkpoint's signed length is fetched or written.
    """
    from .errors import CorruptCheckpointError

    left = length
    while True:
        chunk = stream.read(min(8 << 20, left + 1))
        if not chunk:
            return
        left -= len(chunk)
        if left < 0:
            raise CorruptCheckpointError(
                f"checkpoint {checkpoint_id}: a stored buffer was altered or replaced (its size)",
                reason="a stored buffer was altered or replaced (its size)")
        yield chunk


def _cache_limit() -> int:
    text = os.environ.get("PYCKPT_CACHE_MAX_BYTES", "").strip()
    return int(text) if text.isdigit() else DEFAULT_CACHE_BYTES


def _summary_end(head: bytes) -> int:
    """Where a part's signed summary ends, by the length its head declares (capped)."""
    if len(head) < _SUMMARY_START + 4:
        return len(head)
    length = int.from_bytes(head[_SUMMARY_START : _SUMMARY_START + 4], "little")
    return _SUMMARY_START + 4 + min(length, MAX_SUMMARY) + TAG_SIZE


__all__ = ["DIRECTORY", "Mirror", "copy_checkpoint", "import_bundle", "pull", "trim"]
