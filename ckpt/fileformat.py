"""The on-disk layout of one checkpoint part, written and read as a stream.

A part is (format 3)::

    MAGIC VERSION KEY-ID       KEY-ID: 8 bytes naming the key that signed it
    u32 len, summary JSON      small; all that listing reads
    summary tag                HMAC-SHA256 of every byte before it
    u32 len, detail JSON       summaries of every value; `cdip info NAME` reads it
    header tag                 HMAC-SHA256 of every byte before it
    record*                    one pickled value each (protocol 5)
    END u64 length, tag        HMAC-SHA256, see below

The two header tags let listing and `cdip run`'s parent verify what they show or
act on without reading the records (each under its own label, so one tag can
never stand for another). Formats 1 and 2 had neither: their headers are
verified by reading the whole part.

A record is ``REC u32 nbuffers u64 inband_len u64 buffer_len*`` followed by the
in-band pickle and then each out-of-band buffer, every buffer starting on a
64-byte boundary so it can later be memory-mapped.

The tag is an HMAC-SHA256 over every byte before it, except that (from format 2)
each out-of-band buffer enters it as the SHA-256 digests of its 8 MiB chunks
rather than as its bytes: the chunks of a large array are hashed on every core
while the file is written or read, where one HMAC would run on one core only
(slower than the disk). Forging a buffer means forging the HMAC or a SHA-256
second preimage. The tag is computed while streaming, so a torn or altered file
is detected before anything is unpickled, and fsync is not needed for integrity.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import struct
from collections.abc import Iterable

from .errors import CorruptCheckpointError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import hmac
    from collections.abc import Callable
    from concurrent.futures import Future, ThreadPoolExecutor
    from typing import IO, Any, Union

    Buffer = Union[bytes, bytearray, memoryview]

MAGIC = b"PYCKPT\x00"
VERSION = 3
READABLE = (1, 2, 3)
KEY_ID_SIZE = 8
_SUMMARY_LABEL = b"ckpt summary\x00"
_HEADER_LABEL = b"ckpt header\x00"
END = b"CKPTEND\x00"
RECORD = b"REC\x00"
TAG_SIZE = 32
ALIGN = 64
PEEK_SIZE = 8192
# A header larger than this is not ours: refuse it rather than allocate it.
MAX_HEADER = 64 * 1024 * 1024
# Listing reads every summary: one larger than this is refused unread.
MAX_SUMMARY = 1024 * 1024

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_RECORD_HEAD = struct.Struct("<4sIQ")
_FOOTER = struct.Struct("<8sQ")

_CHUNK = 8 << 20
# Up to this size a buffer is hashed in the calling thread: a pool costs more.
_INLINE = 2 * _CHUNK


def _chunks(view: memoryview) -> Iterable[memoryview]:
    return (view[start : start + _CHUNK] for start in range(0, view.nbytes, _CHUNK))


def _sha256(chunk: memoryview) -> bytes:
    import hashlib  # here: OpenSSL takes ~4 ms to load, and listing never hashes

    return hashlib.sha256(chunk).digest()


def _hash_workers(writing: bool) -> int:
    """Threads hashing chunks (at most 4).

    Writing into the page cache keeps a core busy, so it gets one of its own:
    measured on two cores, a second hashing thread slowed a 1 GiB save by a
    fifth. Reading is a cheaper copy, and hashing bounds it: every core hashes.
    """
    cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1 if writing else cores))


def _chunk_digests(view: memoryview, io: Callable[[memoryview], object], writing: bool) -> bytes:
    """Pass each chunk of `view` to `io` in order (write it, or read into it); hash each.

    Returns the chunks' SHA-256 digests, joined: what format 2 tags in place of
    the bytes. hashlib and file I/O release the GIL, so large buffers are hashed
    by a pool, one chunk per core, while the next chunk moves to or from disk.
    """
    if view.nbytes <= _INLINE:
        io(view)
        return b"".join(_sha256(chunk) for chunk in _chunks(view))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(_hash_workers(writing), thread_name_prefix="ckpt-hash") as pool:
        pending = []
        for chunk in _chunks(view):
            io(chunk)
            pending.append(_submit(pool, chunk))
        return b"".join(future.result() for future in pending)


def key_id(key: bytes) -> bytes:
    """The 8 bytes that name a key in the parts it signs (they reveal nothing of it)."""
    return _label_tag(key, b"ckpt key id\x00", b"")[:KEY_ID_SIZE]


def _label_tag(key: bytes, label: bytes, data: Buffer) -> bytes:
    import hmac

    # one-shot hmac.digest runs in OpenSSL: listing computes one per file
    return hmac.digest(key, label + bytes(data), "sha256")


def _json_block(header: dict[str, Any]) -> bytes:
    blob = json.dumps(header, separators=(",", ":"), default=str).encode()
    return _U32.pack(len(blob)) + blob


def _submit(pool: ThreadPoolExecutor, chunk: memoryview) -> Future[bytes]:
    """Hash `chunk` on the pool, or here once the interpreter is shutting down.

    A save from an atexit handler may start no thread: the pool refuses with
    RuntimeError, and hashing inline is all that is left.
    """
    from concurrent.futures import Future

    try:
        return pool.submit(_sha256, chunk)
    except RuntimeError:
        done: Future[bytes] = Future()
        done.set_result(_sha256(chunk))
        return done


def _pad(offset: int) -> bytes:
    return b"\x00" * (-offset % ALIGN)


class PartWriter:
    """Streams one part to an open binary file, tagging every byte it writes."""

    def __init__(self, stream: IO[bytes], key: bytes) -> None:
        import hmac

        self._stream = stream
        self._key = key
        self._mac = hmac.new(key, digestmod="sha256")
        self._offset = 0

    def _write(self, data: bytes) -> None:
        self._stream.write(data)
        self._mac.update(data)
        self._offset += len(data)

    def write_header(self, summary: dict[str, Any], detail: dict[str, Any]) -> None:
        """Write the magic, the version, the key's id and both JSON headers, each tagged."""
        head = bytearray(MAGIC + bytes([VERSION]) + key_id(self._key))
        head += _json_block(summary)
        head += _label_tag(self._key, _SUMMARY_LABEL, head)
        head += _json_block(detail)
        head += _label_tag(self._key, _HEADER_LABEL, head)
        self._write(bytes(head))

    def write_record(self, inband: bytes, buffers: Iterable[Buffer]) -> None:
        """Write one pickled value and its out-of-band buffers, each aligned."""
        views = [memoryview(buffer).cast("B") for buffer in buffers]
        head = _RECORD_HEAD.pack(RECORD, len(views), len(inband))
        head += b"".join(_U64.pack(view.nbytes) for view in views)
        self._write(head)
        self._write(inband)
        for view in views:
            self._write(_pad(self._offset))
            self._mac.update(_chunk_digests(view, self._stream.write, writing=True))
            self._offset += view.nbytes

    def finish(self) -> bytes:
        """Write the footer and the tag; return the tag."""
        self._write(_FOOTER.pack(END, self._offset))
        tag = self._mac.digest()
        self._stream.write(tag)
        self._offset += TAG_SIZE
        return tag

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._offset


class Record:
    """One pickled value: its in-band pickle and its out-of-band buffers."""

    __slots__ = ("buffers", "inband")

    def __init__(self, inband: bytes, buffers: list[Buffer] | None = None) -> None:
        self.inband = inband
        self.buffers: list[Buffer] = buffers or []


class Part:
    """A fully read (and, unless told otherwise, verified) part."""

    __slots__ = ("detail", "records", "summary", "tag")

    def __init__(self, summary: dict[str, Any], detail: dict[str, Any], records: list[Record],
                 tag: bytes) -> None:
        self.summary, self.detail, self.records, self.tag = summary, detail, records, tag


def _corrupt(path: str, what: str, dead: bool = True) -> CorruptCheckpointError:
    return CorruptCheckpointError(
        f"{path} is not a valid checkpoint ({what})",
        hint="delete it with `cdip rm`, or run `cdip gc` to remove broken files",
        reason=what, dead=dead,
    )


def _check_magic(path: str, head: bytes) -> int:
    if len(head) < len(MAGIC) + 1 or not head.startswith(MAGIC):
        raise _corrupt(path, "not a ckpt file")
    version = head[len(MAGIC)]
    if version not in READABLE:
        raise CorruptCheckpointError(
            f"{path} uses checkpoint format {version}; this ckpt reads format {VERSION}",
            hint="replay it with the ckpt version that wrote it, or upgrade ckpt",
            reason=f"format {version}, not {VERSION}", dead=False,
        )
    return version


def _parse_json(path: str, blob: bytes) -> dict[str, Any]:
    try:
        value = json.loads(blob)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested ten thousand deep
        raise _corrupt(path, "unreadable header") from exc
    if not isinstance(value, dict):
        raise _corrupt(path, "unreadable header")
    return value


def open_part(path: str) -> IO[bytes]:
    """Open a part for reading: a regular file only, never through a link.

    A FIFO would block the reader forever, a device could be anything, and a
    link could lead out of the store: each is refused before a byte is read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _corrupt(path, "a symbolic link, not a checkpoint file", dead=False) from exc
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _corrupt(path, "not a regular file", dead=False)
    return os.fdopen(fd, "rb")


def _refuse(path: str, signer: bytes | None, key: bytes) -> CorruptCheckpointError:
    hint = "replay it once anyway with `cdip run --trust`, or adopt it with `cdip import`"
    if signer is not None and signer != key_id(key):
        return CorruptCheckpointError(
            f"{path} was signed under another key (key {signer.hex()}; yours is "
            f"{key_id(key).hex()}): it comes from elsewhere, or your key was replaced",
            hint=hint, reason=f"signed under another key ({signer.hex()})", dead=False)
    return CorruptCheckpointError(
        f"{path} does not verify: it was altered, truncated, or written under another key",
        hint=hint, reason="does not verify", dead=signer is not None)


def read_summary(path: str, key: bytes | None) -> dict[str, Any]:
    """Read and verify only the small summary header of a part (nothing is unpickled).

    Format 3 tags it on its own, so listing reads a few hundred bytes per file;
    an older part is verified whole first. With `key` None nothing is verified.

    Raises:
        CorruptCheckpointError: not a checkpoint, damaged, or signed under another key.
    """
    with open_part(path) as stream:
        data = stream.read(PEEK_SIZE)
        version = _check_magic(path, data)
        if version < 3:
            stream.seek(0)
            return _read_stream(stream, path, key, keep=False).summary
        start = len(MAGIC) + 1 + KEY_ID_SIZE
        if len(data) < start + 4:
            raise _corrupt(path, "truncated header")
        (length,) = _U32.unpack_from(data, start)
        end = start + 4 + length
        if length > MAX_SUMMARY:
            raise _corrupt(path, "summary too large")
        if end + TAG_SIZE > len(data):
            data += stream.read(end + TAG_SIZE - len(data))
        if end + TAG_SIZE > len(data):
            raise _corrupt(path, "truncated header")
    if key is not None:
        import hmac

        expected = _label_tag(key, _SUMMARY_LABEL, memoryview(data)[:end])
        if not hmac.compare_digest(expected, data[end : end + TAG_SIZE]):
            raise _refuse(path, data[start - KEY_ID_SIZE : start], key)
    return _parse_json(path, data[start + 4 : end])


def read_headers(path: str, key: bytes | None,
                 whole: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read and verify the summary and detail headers of a part (nothing is unpickled).

    Format 3 tags both headers together; an older part (or any part, with
    `whole`: every value's bytes checked too) is verified whole first. With `key`
    None nothing is verified.
    """
    with open_part(path) as stream:
        reader = _Reader(stream, path, mac=None)
        summary, detail = reader.headers()
        if reader.version < 3 or whole:
            stream.seek(0)
            part = _read_stream(stream, path, key, keep=False)
            return part.summary, part.detail
    if key is not None:
        import hmac

        expected = _label_tag(key, _HEADER_LABEL, reader.head[:-TAG_SIZE])
        if not hmac.compare_digest(expected, reader.head[-TAG_SIZE:]):
            raise _refuse(path, reader.signer, key)
    return _parse_json(path, summary), _parse_json(path, detail)  # parsed once verified


class _Reader:
    def __init__(self, stream: IO[bytes], path: str, mac: hmac.HMAC | None) -> None:
        self._stream = stream
        self._path = path
        self._mac = mac
        self._offset = 0
        self._size = os.fstat(stream.fileno()).st_size
        self.version = VERSION
        self.signer: bytes | None = None  # the id of the key that signed it (format 3)
        self.head = bytearray()  # the headers' bytes, tags included (format 3)

    def _fits(self, size: int) -> None:
        # A damaged length must not make us allocate gigabytes: check it first.
        if self._offset + size > self._size:
            raise _corrupt(self._path, "truncated")

    def _exact(self, size: int) -> bytes:
        self._fits(size)
        data = self._stream.read(size)
        if len(data) != size:
            raise _corrupt(self._path, "truncated")
        self._consume(data)
        return data

    def _consume(self, data: Buffer) -> None:
        if self._mac is not None:
            self._mac.update(data)
        self._offset += len(data) if not isinstance(data, memoryview) else data.nbytes

    def _fill(self, view: memoryview) -> None:
        filled = 0
        while filled < view.nbytes:
            count = self._stream.readinto(view[filled:])  # type: ignore[attr-defined]
            if not count:
                raise _corrupt(self._path, "truncated")
            filled += count

    def _buffer(self, length: int, keep: bool) -> Buffer | None:
        """Read one out-of-band buffer, into new memory if `keep`, else only to check it."""
        if keep:
            buffer = _allocate(length)
            self._fill_tagged(memoryview(buffer).cast("B"))
            return buffer
        # Chunk by chunk through one scratch buffer: the same chunks, so the same digests.
        scratch = memoryview(bytearray(min(length, _CHUNK)))
        for start in range(0, length, _CHUNK):
            self._fill_tagged(scratch[: min(_CHUNK, length - start)])
        return None

    def _fill_tagged(self, view: memoryview) -> None:
        """Read into `view`, tagging it as its format says: chunk digests, or bytes (1)."""
        if self._mac is not None and self.version >= 2:
            self._mac.update(_chunk_digests(view, self._fill, writing=False))
            self._offset += view.nbytes
        else:
            self._fill(view)
            self._consume(view)

    def headers(self) -> tuple[bytes, bytes]:
        """The summary and detail headers' JSON, unparsed: parsing waits for the tag."""
        head = self._exact(len(MAGIC) + 1)
        self.version = _check_magic(self._path, head)
        if self.version < 3:
            return self._json(MAX_SUMMARY), self._json(MAX_HEADER)
        self.signer = self._exact(KEY_ID_SIZE)
        self.head += head + self.signer
        summary = self._json(MAX_SUMMARY)
        self.head += self._exact(TAG_SIZE)
        detail = self._json(MAX_HEADER)
        self.head += self._exact(TAG_SIZE)
        return summary, detail

    def _json(self, limit: int) -> bytes:
        size = self._exact(4)
        (length,) = _U32.unpack(size)
        if length > limit:
            raise _corrupt(self._path, "header too large")
        blob = self._exact(length)
        if self.version >= 3:
            self.head += size + blob
        return blob

    def record_or_end(self, keep: bool = True) -> Record | None:
        kind = self._exact(4)
        if kind == END[:4]:
            return None
        if kind != RECORD:
            raise _corrupt(self._path, f"unexpected bytes at offset {self._offset - 4}")
        nbuffers, inband_len = struct.unpack("<IQ", self._exact(12))
        lengths = [_U64.unpack(self._exact(8))[0] for _ in range(nbuffers)]
        inband = self._exact(inband_len)
        buffers = []
        for length in lengths:
            self._exact(-self._offset % ALIGN)
            self._fits(length)
            buffer = self._buffer(length, keep)
            if buffer is not None:
                buffers.append(buffer)
        return Record(inband, buffers)

    def footer(self) -> bytes:
        rest = self._exact(4)
        (length,) = _U64.unpack(self._exact(8))
        if rest != END[4:] or length != self._offset - _FOOTER.size:
            raise _corrupt(self._path, "bad footer")
        tag = self._stream.read(TAG_SIZE + 1)
        if len(tag) != TAG_SIZE:
            raise _corrupt(self._path, "truncated" if len(tag) < TAG_SIZE else "trailing bytes")
        return tag


def _allocate(size: int) -> Buffer:
    """A writable buffer for `size` bytes, aligned for numpy when numpy is there."""
    # bytearray(size) zero-fills every page before we overwrite it; numpy.empty
    # does not, and its memory is aligned for any dtype.
    try:
        import numpy
    except ImportError:
        return bytearray(size)
    return numpy.empty(size, dtype=numpy.uint8).data


def read_part(path: str, key: bytes | None) -> Part:
    """Read a whole part and verify its tag before returning anything from it.

    With `key` None the tag is not checked (the user said `--trust`).

    Raises:
        CorruptCheckpointError: the file is truncated, altered or signed with
            another key.
    """
    return _read(path, key, keep=True)


def verify_part(path: str, key: bytes) -> bytes:
    """Check a part's tag, keeping nothing (nothing is unpickled); return the tag."""
    return _read(path, key, keep=False).tag


def _read(path: str, key: bytes | None, keep: bool) -> Part:
    with open_part(path) as stream:
        return _read_stream(stream, path, key, keep)


def _read_stream(stream: IO[bytes], path: str, key: bytes | None, keep: bool) -> Part:
    import hmac

    mac = hmac.new(key, digestmod="sha256") if key is not None else None
    reader = _Reader(stream, path, mac=mac)
    summary, detail = reader.headers()
    records = []
    while (record := reader.record_or_end(keep)) is not None:
        records.append(record)
    tag = reader.footer()
    if key is not None and mac is not None and not hmac.compare_digest(tag, mac.digest()):
        raise _refuse(path, reader.signer, key)
    # JSON is parsed only from verified bytes: a crafted header could cost gigabytes
    return Part(_parse_json(path, summary), _parse_json(path, detail), records, tag)
