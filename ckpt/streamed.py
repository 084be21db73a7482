"""Out-of-band buffers whose bytes are not in host memory: brought there a chunk at a time.

A GPU tensor's storage is the case: copying it to the host whole before writing
it would hold a second copy of every byte (torch.save does). Instead its pickle
names a `StreamedBuffer`, and whoever writes the record (`ckpt.fileformat`) asks
it for its bytes in chunks, each copied into one of a few reused host buffers
(pinned for CUDA), written and hashed while the next one is copied.
"""

from __future__ import annotations

import io
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any


class StreamedBuffer(bytearray):
    """`nbytes` bytes that exist elsewhere, handed out in chunks.

    Empty itself: a bytearray only so that `pickle.PickleBuffer` takes it, which
    puts its place among the pickle's out-of-band buffers; the writer then finds
    this object behind the buffer (`memoryview.obj`) and asks it for the bytes.
    Subclasses say how a chunk is copied out (`copies`).

    The bytes may change between two passes (another thread or CUDA stream writing
    into the storage): once a pass has named them (`write_digests`: the blob id),
    every later pass (the put of a blob found missing, an upload, a put-back) is
    checked chunk by chunk against that pass's digests and raises rather than
    store other bytes under the id.
    """

    nbytes: int
    # The chunk size and the joined SHA-256 digests of the first complete pass: what
    # the blob id stands for (None until then).
    hashed: tuple[int, bytes] | None = None
    # The memory the bytes are in (device, address, length), when known: another
    # buffer over the same memory holds the same bytes (see `blobwrite.BlobPlan`).
    where: tuple[str, int, int] | None = None

    def copies(self, size: int, depth: int) -> Iterator[memoryview]:
        """Yield the bytes in order, `size` at a time, each a copy in host memory.

        A chunk stays valid until `depth` more have been taken: up to that many
        reused host buffers hold them.
        """
        raise NotImplementedError

    def chunks(self, size: int, depth: int) -> Iterator[memoryview]:
        """Yield the bytes in order, as `copies` does; checked once they were hashed.

        A checked pass copies the hashed pass's chunks (its size, not `size`) and
        raises `CkptError` at the first that is not what the id stands for.
        """
        if self.hashed is None:
            yield from self.copies(size, depth)
            return
        import hashlib

        step, digests = self.hashed
        for index, chunk in enumerate(self.copies(step, depth)):
            if hashlib.sha256(chunk).digest() != digests[index * 32 : index * 32 + 32]:
                raise changed(self.nbytes)
            yield chunk

    def host(self) -> memoryview:
        """All the bytes in host memory at once (for a buffer too small for a blob)."""
        whole = bytearray(self.nbytes)
        view = memoryview(whole)
        offset = 0
        for chunk in self.chunks(8 << 20, 1):
            view[offset : offset + chunk.nbytes] = chunk
            offset += chunk.nbytes
        return view


def changed(nbytes: int) -> Exception:
    """The error of a save whose buffer changed after its bytes were named (hashed)."""
    from .errors import CkptError

    return CkptError(f"a buffer of {nbytes} bytes changed while it was being saved",
                     hint="another thread or CUDA stream wrote into it; synchronize it "
                     "before the error is raised")


class ChunkReader(io.RawIOBase):
    """Chunks as a readable file (for an upload that copies what it reads).

    Args:
        source: a streamed buffer (read `size` at a time), or the chunks themselves,
            each valid until the next is taken.
    """

    def __init__(self, source: StreamedBuffer | Iterator[memoryview], size: int = 8 << 20
                 ) -> None:
        super().__init__()
        # each chunk is read whole before the next is taken
        self._chunks = source.chunks(size, 1) if isinstance(source, StreamedBuffer) else source
        self._rest = memoryview(b"")

    def readable(self) -> bool:
        """Yes."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Copy the next bytes into `buffer`; 0 at the end."""
        while not self._rest.nbytes:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = chunk
        target = memoryview(buffer).cast("B")
        count = min(target.nbytes, self._rest.nbytes)
        target[:count] = self._rest[:count]
        self._rest = self._rest[count:]
        return count


def length(buffer: object) -> int:
    """The bytes an out-of-band buffer stands for."""
    if isinstance(buffer, StreamedBuffer):
        return buffer.nbytes
    return memoryview(buffer).nbytes  # type: ignore[arg-type]


def host_view(buffer: object) -> memoryview:
    """An out-of-band buffer's bytes as one flat host view (a streamed one copied whole)."""
    if isinstance(buffer, StreamedBuffer):
        return buffer.host()
    return memoryview(buffer).cast("B")  # type: ignore[arg-type]


def behind(raw: memoryview) -> memoryview | StreamedBuffer:
    """What a pickler's out-of-band buffer stands for: its view, or the streamed buffer."""
    found = raw.obj
    return found if isinstance(found, StreamedBuffer) else raw


def write_digests(source: StreamedBuffer, chunk_size: int,
                  write_chunk: Callable[[memoryview, int], bytes]) -> bytes:
    """Pass each chunk of `source` to `write_chunk(chunk, offset)` on a pool; join its digests.

    This thread copies chunks out (a device-to-host copy is the device's work, not
    a core's) while up to four others each write and hash one: the copy of the
    next chunk overlaps the writing of the last ones, and only `depth` chunks of
    host memory are ever held. `write_chunk` returns the chunk's SHA-256 digest;
    the first complete pass's digests are kept (`StreamedBuffer.hashed`).
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    from .chunkhash import submit_or_run

    workers = max(1, min(4, os.cpu_count() or 1))
    depth = workers + 2  # the chunk being copied, those being written, one spare
    digests: list[bytes] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="ckpt-stream") as pool:
        pending: deque[object] = deque()
        offset = 0
        try:
            for chunk in source.chunks(chunk_size, depth):
                # inline once the interpreter is shutting down (an atexit save)
                pending.append(submit_or_run(pool, write_chunk, chunk, offset))
                offset += chunk.nbytes
                # the next chunk reuses the host buffer of the one `depth` back: done by then
                while len(pending) >= depth - 1:
                    digests.append(pending.popleft().result())  # type: ignore[attr-defined]
            digests.extend(future.result() for future in pending)  # type: ignore[attr-defined]
        except BaseException:
            for future in pending:
                future.cancel()  # type: ignore[attr-defined]
            raise
    joined = b"".join(digests)
    if source.hashed is None:  # what the id stands for: a later pass must match it
        source.hashed = (chunk_size, joined)
    return joined
