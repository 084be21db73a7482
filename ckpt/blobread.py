"""Reading a part's blobs back: each checked against its signed id, mapped in place where it may be.

A part of format 4 names its large buffers by blob id (`ckpt.fileformat`); a
load brings each blob in here and hashes its chunks again (`ckpt.chunkhash`):
a blob's name is never trusted for its content, except where a verification
record vouches for its file as it is now (`ckpt.verified`).
"""

from __future__ import annotations

import errno
import os
import time

from .chunkhash import CHUNK, blob_id, chunk_digests, digests_of_all, no_io
from .fileformat import _allocate, _corrupt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Union

    from .verified import Records

    Buffer = Union[bytes, bytearray, memoryview]


class BlobLoader:
    """Reads the blobs of one load's parts, each checked against its id once.

    A blob owned by this user and writable by no one else is memory-mapped
    (copy-on-write: the values stay writable, the file untouched) and hashed on
    every core in place: no copy at all. Its bytes cannot change under the
    mapping except by this user (blobs are only ever replaced by a rename, which
    leaves a mapped file as it was), who holds the key anyway. Any other blob
    is read into new memory while its chunks are hashed. A second reference to
    the same blob (an argument that is also a local) is mapped again from the
    same open file, or copied from the first, without hashing it again.

    With `records` (`ckpt.verified`), a blob it would map is not hashed at all
    when a valid verification record vouches for its file as it is now; one it
    hashes and finds right is recorded.
    """

    def __init__(self, blobs: Any, records: Records | None = None) -> None:
        self._blobs = blobs
        self._records = records
        self._verified: dict[str, tuple[int | None, Buffer | None]] = {}
        self._ready: dict[str, memoryview] = {}  # mapped and checked by `prefetch`, not yet used

    @classmethod
    def of_store(cls, store_path: str, key: bytes | None = None) -> BlobLoader:
        """A loader of the blobs of the store at `store_path` (its records under `key`)."""
        from .blobs import Blobs
        from .verified import Records

        return cls(Blobs(store_path), Records.of(store_path, key))

    def load(self, blob: str, length: int, keep: bool, path: str) -> Buffer | None:
        """The blob's bytes (None unless `keep`), once they hashed to `blob`."""
        if blob in self._verified:  # read and checked for this load already
            fd, first = self._verified[blob]
            if not keep:
                return None
            ready = self._ready.pop(blob, None)
            if ready is not None:
                return ready
            return _map(fd, length) if fd is not None else _copy(first, length)
        opened = time.time_ns()
        fd, info = self._open(blob, length, path)
        try:
            mapped = length > 0 and _mappable(info)
            if mapped and keep and self._vouched(blob, info):
                buffer: Buffer | None = _map(fd, length)
            else:
                buffer, digests = _read_blob(fd, length, keep, mapped)
                _check_blob(blob, length, digests, path)
                if mapped and self._records is not None:
                    self._records.hashed(blob, fd, info, opened)
        except BaseException:
            os.close(fd)
            raise
        if mapped and keep:
            self._verified[blob] = (fd, None)
        else:
            os.close(fd)
            if keep:
                self._verified[blob] = (None, buffer)
        return buffer

    def prefetch(self, refs: list[tuple[str, int]], path: str) -> None:
        """Map and check the blobs of a part all at once: every chunk of every blob on one pool.

        A blob larger than two chunks is hashed in parallel on its own; a model of
        many smaller tensors would be hashed one by one on one core without this.
        What cannot be mapped is left to `load`.
        """
        todo = [(blob, length) for blob, length in dict(refs).items()
                if blob not in self._verified and length > 0]
        if len(todo) < 2:
            return
        mapped: list[tuple[str, int, int, memoryview]] = []
        unvouched: list[tuple[str, int, int, memoryview, os.stat_result]] = []
        opened = time.time_ns()
        try:
            for blob, length in todo:
                fd, info = self._open(blob, length, path)
                if not _mappable(info):
                    os.close(fd)
                    continue
                try:
                    mapped.append((blob, length, fd, _map(fd, length)))
                except BaseException:
                    os.close(fd)
                    raise
                if not self._vouched(blob, info):
                    unvouched.append((*mapped[-1], info))
            digests = digests_of_all([view for *_, view, _ in unvouched])
            for (blob, length, _, _, _), digest in zip(unvouched, digests):
                _check_blob(blob, length, digest, path)
        except BaseException:
            for _, _, fd, _ in mapped:
                os.close(fd)
            raise
        if self._records is not None:
            for blob, _, fd, _, info in unvouched:
                self._records.hashed(blob, fd, info, opened)
        for blob, _, fd, view in mapped:
            self._verified[blob] = (fd, None)
            self._ready[blob] = view

    def _vouched(self, blob: str, info: os.stat_result) -> bool:
        """Whether a verification record vouches for the blob's file as `info` shows it."""
        return self._records is not None and self._records.trusts(blob, info)

    def _open(self, blob: str, length: int, path: str) -> tuple[int, os.stat_result]:
        try:
            fd = self._blobs.open(blob)
        except FileNotFoundError as exc:
            raise _corrupt(path, f"its stored buffer {blob[:16]} is missing") from exc
        except OSError as exc:
            raise _corrupt(path, f"its stored buffer {blob[:16]} is unreadable "
                           f"({exc.strerror})") from exc
        info = os.fstat(fd)
        if info.st_size != length:
            os.close(fd)
            raise _corrupt(path, f"its stored buffer {blob[:16]} was altered or replaced "
                           f"(it has {info.st_size} bytes, not {length})")
        return fd, info

    def close(self) -> None:
        """Close the files kept open for mapping again (mappings made stay valid)."""
        for fd, _ in self._verified.values():
            if fd is not None:
                os.close(fd)
        self._verified.clear()
        self._ready.clear()

    def __del__(self) -> None:
        self.close()


def _check_blob(blob: str, length: int, digests: bytes, path: str) -> None:
    if blob_id(length, digests) != blob:
        raise _corrupt(path, f"its stored buffer {blob[:16]} was altered or replaced "
                       "(its bytes do not hash to the id its header signs)")



def _mappable(info: os.stat_result) -> bool:
    """A blob's bytes may be used in place: ours, writable by no one else, one to spare.

    See `_map` for the last.
    """
    owner = os.geteuid() if hasattr(os, "geteuid") else info.st_uid
    return info.st_uid == owner and not info.st_mode & 0o022 and _mapped[0] < _MAX_MAPPED


# Before Python 3.13 every mapping keeps a descriptor of its own open as long as the
# value lives: a model of thousands of large tensors would run out of them. So at most
# this many mapped values live at once; any more are read into memory.
_MAX_MAPPED = 256
_mapped = [0]


def _map(fd: int, length: int) -> memoryview:
    import mmap
    import sys

    if sys.version_info >= (3, 13):
        return memoryview(mmap.mmap(fd, length, access=mmap.ACCESS_COPY, trackfd=False))
    import weakref

    mapping = mmap.mmap(fd, length, access=mmap.ACCESS_COPY)
    _mapped[0] += 1
    weakref.finalize(mapping, _unmapped)
    return memoryview(mapping)


def _unmapped() -> None:
    _mapped[0] -= 1


def _copy(first: Buffer | None, length: int) -> Buffer:
    buffer = _allocate(length)
    memoryview(buffer).cast("B")[:] = memoryview(first if first is not None else b"").cast("B")
    return buffer


def _read_blob(fd: int, length: int, keep: bool, mapped: bool) -> tuple[Buffer | None, bytes]:
    """Bring a blob in (mapped, or read into new memory), hashing its chunks meanwhile."""
    if mapped:
        view = _map(fd, length)
        digests = chunk_digests(view, no_io, writing=False)
        return (view if keep else None), digests
    stream = os.fdopen(os.dup(fd), "rb", buffering=0)
    with stream:
        def fill(chunk: memoryview) -> None:
            filled = 0
            while filled < chunk.nbytes:
                count = stream.readinto(chunk[filled:])
                if not count:
                    raise OSError(errno.EIO, "the blob was truncated while it was read")
                filled += count

        if keep:
            buffer = _allocate(length)
            return buffer, chunk_digests(memoryview(buffer).cast("B"), fill, writing=False)
        scratch = memoryview(bytearray(min(length, CHUNK)))
        digests = b"".join(chunk_digests(scratch[: min(CHUNK, length - start)], fill,
                                         writing=False) for start in range(0, length, CHUNK))
        return None, digests


def hashes_to_id(blobs: Any, blob: str, length: int) -> bool:
    """Whether the blob's file holds `length` bytes that hash to `blob` now; never raises.

    False as well when it is missing or cannot be read.
    """
    from .errors import CorruptCheckpointError

    try:
        BlobLoader(blobs).load(blob, length, keep=False, path=blob)
    except (OSError, ValueError, CorruptCheckpointError):
        return False
    return True
