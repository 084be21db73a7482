"""Writing a part's large buffers as the store's blobs: each hashed, named, and stored once.

A buffer of at least `fileformat.BLOB_MIN` bytes goes to the store's blobs
(`ckpt.blobs`) under its `chunkhash.blob_id`. One new to the store is written
while its chunks are hashed, in one pass; one whose family is there already is
only hashed, and put if it is missing after all (`fileformat.write_stream`).
"""

from __future__ import annotations

import os
import sys

from .chunkhash import CHUNK, blob_id, buffer_id, family, sha256
from .fileformat import BLOB_MIN
from .streamed import StreamedBuffer, changed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

# A new blob is written and hashed this much at a time: a piece stays in the CPU's cache.
_PIECE = 1 << 20


class BlobPlan:
    """The buffers of one part's records that go to the store's blobs, each named once.

    Args:
        records: the part's records.
        blobs: the store's blobs (a `ckpt.blobs.Blobs`). A buffer whose family
            has no blob yet is written to it here, as it is hashed.
        known: blob ids already computed in this save, by ``id()`` of the buffer
            object (the buffer kept alive with it, so its id stays its own): an
            argument that is also a local is hashed once for both parts.
    """

    def __init__(self, records: Iterable[Any], blobs: Any,
                 known: dict[int, tuple[Any, str]] | None = None, fsync: bool = False) -> None:
        self.refs: list[list[Any]] = []  # [id, length] of each blob, as the summary lists them
        self.index: dict[int, tuple[int, str]] = {}  # id(buffer) -> (1-based index, blob id)
        self.views: dict[str, memoryview | StreamedBuffer] = {}  # each blob's bytes
        self.written = 0  # bytes of new blobs written as they were hashed
        self.fresh: list[str] = []  # the ids of those blobs
        known = {} if known is None else known
        unique: dict[int, tuple[Any, memoryview | StreamedBuffer]] = {}  # by id(), in order
        # id() of each buffer -> id() of the first over the same memory: a model and its
        # optimizer are two pickles, so two buffers over each parameter; one is read
        first: dict[int, int] = {}
        seen: dict[tuple[str, int, int], int] = {}
        for record in records:
            for buffer in record.buffers:
                if id(buffer) not in unique:
                    view = (buffer if isinstance(buffer, StreamedBuffer)
                            else memoryview(buffer).cast("B"))
                    if view.nbytes >= BLOB_MIN:
                        unique[id(buffer)] = (buffer, view)
                        where = _memory(view)
                        first[id(buffer)] = (id(buffer) if where is None
                                             else seen.setdefault(where, id(buffer)))
        stored = _store_all([(key, view) for key, (_, view) in unique.items()
                             if key not in known and first[key] == key], blobs, fsync)
        positions: dict[str, int] = {}
        for key, (buffer, view) in unique.items():
            if key not in known:
                if first[key] != key:  # over the memory of one before it: that one's blob
                    digest = known[first[key]][1]
                else:
                    digest, written = stored[key]
                    # two buffers of equal bytes written side by side: one blob, counted once
                    if written and digest not in self.fresh:
                        self.written += written
                        self.fresh.append(digest)
                known[key] = (buffer, digest)
            digest = known[key][1]
            if digest not in positions:
                self.views[digest] = view
                self.refs.append([digest, view.nbytes])
                positions[digest] = len(self.refs)
            self.index[key] = (positions[digest], digest)


def _memory(view: memoryview | StreamedBuffer) -> tuple[str, int, int] | None:
    """The memory a buffer's bytes are in (device, address, length), when it is known.

    A numpy array's whole memory (a CPU tensor's storage, an array's) or a device
    storage's; anything else (bytes, a slice of an array) is not compared.
    """
    if isinstance(view, StreamedBuffer):
        return view.where
    numpy = sys.modules.get("numpy")
    array: Any = view.obj
    if numpy is None or type(array) is not numpy.ndarray or array.nbytes != view.nbytes:
        return None
    return ("cpu", int(array.__array_interface__["data"][0]), view.nbytes)


def _store_all(items: list[tuple[int, memoryview | StreamedBuffer]], blobs: Any,
               fsync: bool) -> dict[int, tuple[str, int]]:
    """`_store` each buffer, by key: those of one chunk side by side, one a core (up to 4).

    A model's parameters are many buffers of a few MiB: stored one after another, one
    core hashed and wrote them all (a model of 128 parameters of 2 MiB took 0.6 s,
    torch.save 0.2 s). A larger buffer has a pool of its own for its chunks: those go
    after, one at a time.
    """
    small = [(key, view) for key, view in items if view.nbytes <= CHUNK]
    stored: dict[int, tuple[str, int]] = {}
    workers = min(4, os.cpu_count() or 1, len(small))
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers, thread_name_prefix="ckpt-blob") as pool:
            try:
                futures = [(key, pool.submit(_store, view, blobs, fsync)) for key, view in small]
            except RuntimeError:  # interpreter shutting down (an atexit save): one at a time
                futures = []
            try:
                for key, future in futures:
                    stored[key] = future.result()
            except BaseException:  # Ctrl-C, a full disk: none of the rest is started
                for _, future in futures:
                    future.cancel()
                raise  # once those being written are done (leaving the pool waits for them)
    for key, view in items:
        if key not in stored:
            stored[key] = _store(view, blobs, fsync)
    return stored


def put_planned(plan: BlobPlan, blobs: Any, key: bytes, fsync: bool) -> int:
    """Put each blob of `plan` that is not in `blobs` whole, claim the others; the bytes written.

    Notes for `ckpt.verified` to record once the save settles the blobs written
    (and hashed) and those reused that a record vouches for before this save
    claims them (a claim sets a blob's times: its record would go stale).
    """
    from .verified import note_written

    reused = [blob for blob, _ in plan.refs if blob not in plan.fresh]
    note_written(blobs, [], reused, key)
    written = 0
    for blob, _ in plan.refs:
        view = plan.views[blob]
        put = 0
        # A remote store keeps put-if-absent: checking a blob there would mean downloading it.
        if blob in reused and not blobs.remote:
            put = _renew_if_damaged(blobs, blob, view, key, fsync)
        put += blobs.put(blob, view, fsync=fsync)
        written += put
        if put:
            plan.fresh.append(blob)
    note_written(blobs, plan.fresh, [], key)
    return written


def _renew_if_damaged(blobs: Any, blob: str, view: memoryview | StreamedBuffer, key: bytes,
                      fsync: bool) -> int:
    """Rewrite a local blob this save reuses if its bytes no longer hash to its id; bytes written.

    Its name and size say nothing of its bytes: altered in place, a blob that
    every later save of the same data reuses could never be loaded again. So one
    that `note_written` did not note (no verification record vouched for it, and
    this save neither wrote nor checked it) is hashed first: damaged, it is
    replaced by `view`'s bytes (by a rename: a reader keeps what it had); whole,
    it is noted, to be recorded once the save settles. A missing blob, or one of
    another size, is left to `Blobs.put`.
    """
    from .blobread import hashes_to_id
    from .verified import blob_stat, note_written, noted

    info = blob_stat(blobs, blob)
    if info is None or info.st_size != view.nbytes or noted(blobs, blob, key, info):
        return 0
    if hashes_to_id(blobs, blob, view.nbytes):
        note_written(blobs, [blob], [], key)
        return 0
    return int(blobs.replace(blob, view, fsync))


def _store(view: memoryview | StreamedBuffer, blobs: Any, fsync: bool) -> tuple[str, int]:
    """A buffer's blob id, and the bytes written: now if no blob of its family is there.

    The first chunk's digest names the family. None there: the buffer is new to
    the store, and is written while its chunks are hashed (one pass, as fast as a
    plain write). Else it is likely there already: it is only hashed, and
    `write_stream` puts it if it is missing after all.
    """
    if isinstance(view, StreamedBuffer):
        return _store_streamed(view, blobs, fsync)
    if view.nbytes <= CHUNK:  # hashed and written from one copy (see `_write_chunk`)
        copy = memoryview(bytearray(view))
        return _store_whole(copy, sha256(copy), blobs, fsync)
    first = sha256(view[:CHUNK])
    named = family(view.nbytes, first)
    if blobs.family_exists(named):
        return buffer_id(view), 0
    writer = blobs.create(named)
    try:
        digests = _write_digests(view, writer.write_at)
        if digests[:32] != first:  # written into since its family was named
            raise changed(view.nbytes)
        digest = blob_id(view.nbytes, digests)
    except BaseException:
        writer.abort()
        raise
    writer.commit(digest, fsync)
    return digest, view.nbytes


def _store_streamed(source: StreamedBuffer, blobs: Any, fsync: bool) -> tuple[str, int]:
    """`_store` for bytes that come in chunks (a GPU tensor's): never whole in host memory."""
    from .streamed import write_digests

    head = next(source.chunks(CHUNK, 1))
    first = sha256(head)
    if source.nbytes <= CHUNK:  # all of it in hand: one copy, no pool (a model's parameters)
        source.hashed = (CHUNK, first)  # what its id stands for: a later pass is checked
        return _store_whole(head, first, blobs, fsync)
    named = family(source.nbytes, first)
    if blobs.family_exists(named):
        return blob_id(source.nbytes, write_digests(source, CHUNK, _hash_only)), 0
    writer = blobs.create(named)
    try:
        digest = blob_id(source.nbytes, write_digests(
            source, CHUNK,
            lambda chunk, offset: _write_chunk(chunk, offset, writer.write_at, True)))
    except BaseException:
        writer.abort()
        raise
    writer.commit(digest, fsync)
    return digest, source.nbytes


def _store_whole(copy: memoryview, digest: bytes, blobs: Any, fsync: bool) -> tuple[str, int]:
    """`_store` for a buffer of one chunk, in hand as a private `copy` hashed to `digest`."""
    content = blob_id(copy.nbytes, digest)
    named = family(copy.nbytes, digest)
    if blobs.family_exists(named):
        return content, 0
    writer = blobs.create(named)
    try:
        writer.write(copy)
    except BaseException:
        writer.abort()
        raise
    writer.commit(content, fsync)
    return content, copy.nbytes


def _hash_only(chunk: memoryview, offset: int) -> bytes:
    return sha256(chunk)


def _write_digests(view: memoryview, write_at: Callable[[memoryview, int], object]) -> bytes:
    """Write `view` through `write_at(piece, offset)` and return its chunks' digests.

    Every thread (one a core, up to 4, this one included) takes the next whole
    chunk and writes then hashes it a piece at a time, so each piece is hashed
    while it is still in the CPU's cache and writing and hashing share all cores.
    (A writing thread beside a hashing one read memory twice and left a core idle
    once written: a 1 GiB save took 0.71 s here against 0.48 s this way.)
    """
    from concurrent.futures import ThreadPoolExecutor
    from itertools import count

    digests = [b""] * -(-view.nbytes // CHUNK)
    claims = count()  # next() on it is atomic: each chunk goes to one thread
    failed: list[bool] = []

    def work() -> None:
        try:
            while not failed and (index := next(claims)) < len(digests):
                start = index * CHUNK
                digests[index] = _write_chunk(view[start : start + CHUNK], start, write_at)
        except BaseException:
            failed.append(True)  # the others stop at their next chunk
            raise

    helpers = min(4, os.cpu_count() or 1) - 1
    with ThreadPoolExecutor(max(helpers, 1), thread_name_prefix="ckpt-hash") as pool:
        started = []
        try:
            for _ in range(helpers):
                started.append(pool.submit(work))
        except RuntimeError:  # interpreter shutting down (an atexit save): this thread alone
            pass
        work()
        for future in started:
            future.result()
    return b"".join(digests)


def _write_chunk(chunk: memoryview, offset: int,
                 write_at: Callable[[memoryview, int], object], private: bool = False) -> bytes:
    """Write `chunk` at `offset` a piece at a time; its digest.

    Unless the chunk is `private` (a copy already: a device's), each piece is
    copied first, then written and hashed from the copy: the chunk is the user's
    memory, and another thread writing into it between the write and the hash
    would leave a file whose bytes are not its id's (the copy stays in the CPU's
    cache).
    """
    import hashlib

    digest = hashlib.sha256()
    scratch = None if private else memoryview(bytearray(min(_PIECE, chunk.nbytes)))
    for start in range(0, chunk.nbytes, _PIECE):
        piece = chunk[start : start + _PIECE]
        if scratch is not None:
            scratch[: piece.nbytes] = piece
            piece = scratch[: piece.nbytes]
        write_at(piece, offset + start)
        digest.update(piece)
    return digest.digest()
