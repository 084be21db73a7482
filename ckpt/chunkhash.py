"""How a buffer is hashed: by 8 MiB chunks on every core, and the blob id those digests make.

From format 2 a part's tag takes each out-of-band buffer as the SHA-256 digests
of its chunks rather than as its bytes (`ckpt.fileformat`), and a blob of the
store is named by `blob_id`, a hash of the same digests (`ckpt.blobwrite`,
`ckpt.blobread`). hashlib and file I/O release the GIL, so the chunks of a
large buffer are hashed on a pool while the next chunk moves to or from disk.
"""

from __future__ import annotations

import os
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from concurrent.futures import Future, ThreadPoolExecutor
    from typing import Any, TypeVar

    T = TypeVar("T")

CHUNK = 8 << 20
# Up to this size a buffer is hashed in the calling thread: a pool costs more.
_INLINE = 2 * CHUNK
_U64 = struct.Struct("<Q")
_BLOB_LABEL = b"ckpt blob\x00"
_FAMILY_LABEL = b"ckpt blob family\x00"


def chunks(view: memoryview) -> Iterable[memoryview]:
    """The `CHUNK`-sized pieces of `view`, in order (the last one shorter)."""
    return (view[start : start + CHUNK] for start in range(0, view.nbytes, CHUNK))


def sha256(chunk: memoryview) -> bytes:
    """The SHA-256 digest of one chunk."""
    import hashlib  # here: OpenSSL takes ~4 ms to load, and listing never hashes

    return hashlib.sha256(chunk).digest()


def hash_workers(writing: bool) -> int:
    """Threads hashing chunks (at most 4 writing, 8 reading).

    Writing into the page cache keeps a core busy, so it gets one of its own:
    measured on two cores, a second hashing thread slowed a 1 GiB save by a
    fifth. A blob read is mapped, not copied, so hashing is all a load does:
    every core hashes (SHA-256 runs at 1.5-2 GB/s a core with SHA extensions).
    """
    cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1) if writing else min(8, cores))


def chunk_digests(view: memoryview, io: Callable[[memoryview], object], writing: bool) -> bytes:
    """Pass each chunk of `view` to `io` in order (write it, or read into it); hash each.

    Returns the chunks' SHA-256 digests, joined: what format 2 tags in place of
    the bytes. Large buffers are hashed by a pool, one chunk per core, while the
    next chunk moves to or from disk.
    """
    if view.nbytes <= _INLINE:
        io(view)
        return b"".join(sha256(chunk) for chunk in chunks(view))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(hash_workers(writing), thread_name_prefix="ckpt-hash") as pool:
        pending = []
        for chunk in chunks(view):
            io(chunk)
            pending.append(submit_hash(pool, chunk))
        return b"".join(future.result() for future in pending)


def digests_of_all(views: list[memoryview]) -> list[bytes]:
    """The chunk digests of each view, every chunk of every view hashed on one pool."""
    if not views:
        return []
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(hash_workers(False), thread_name_prefix="ckpt-hash") as pool:
        pending = [[submit_hash(pool, chunk) for chunk in chunks(view)] for view in views]
        return [b"".join(future.result() for future in futures) for futures in pending]


def submit_hash(pool: ThreadPoolExecutor, chunk: memoryview) -> Future[bytes]:
    """Hash `chunk` on the pool, or here once the interpreter is shutting down."""
    return submit_or_run(pool, sha256, chunk)


def submit_or_run(pool: ThreadPoolExecutor, work: Callable[..., T], *args: Any) -> Future[T]:
    """`work(*args)` on the pool, or here once the interpreter is shutting down.

    A save from an atexit handler may start no thread: the pool refuses with
    RuntimeError, and working inline is all that is left.
    """
    from concurrent.futures import Future

    try:
        return pool.submit(work, *args)
    except RuntimeError:
        done: Future[T] = Future()
        done.set_result(work(*args))
        return done


def no_io(chunk: memoryview) -> None:
    """Hash only (the chunk moves nowhere)."""


def blob_id(length: int, digests: bytes) -> str:
    """The id a buffer is stored under (80 hex digits): its family, then its content.

    The family (16 digits) is a SHA-256 over its length and its first chunk's
    digest: a writer computes it from the first chunk alone. The rest is a
    SHA-256 over its length and every chunk's digest, the whole content.
    """
    import hashlib

    return family(length, digests[:32]) + hashlib.sha256(
        _BLOB_LABEL + _U64.pack(length) + digests).hexdigest()


def family(length: int, first_digest: bytes) -> str:
    """The 16 hex digits naming a blob's family: its length and its first chunk's digest."""
    import hashlib

    return hashlib.sha256(_FAMILY_LABEL + _U64.pack(length) + first_digest).hexdigest()[:16]


def buffer_id(view: memoryview) -> str:
    """The blob id of a buffer's bytes (hashed on every core)."""
    return blob_id(view.nbytes, chunk_digests(view, no_io, writing=False))
