"""The on-disk layout of one checkpoint part, written and read as a stream.

A part is (format 4)::

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

A record is ``REC u32 nbuffers u64 inband_len (u64 buffer_len u32 blob)*``
followed by the in-band pickle and then each out-of-band buffer kept in the
part, every buffer starting on a 64-byte boundary so it can later be
memory-mapped. (Formats 1 to 3 have no ``blob`` field: every buffer is in the
part.)

From format 4 a buffer of at least `BLOB_MIN` bytes is not in the part: it is a
blob of the store (`ckpt.blobs`), written once however many parts, calls and
names hold it. Its record field ``blob`` is its 1-based index in the summary's
``blobs`` list of ``[id, length]``, and its id is `chunkhash.blob_id`: a SHA-256
over its length and the digests of its 8 MiB chunks (after a short prefix naming
its length and first chunk alone, for the writer's lookup). The summary's tag
covers the list, so listing, `cdip gc`, retention and export know which blobs a
part holds from its header alone; reading a blob (`ckpt.blobread`) hashes its
chunks again and must arrive at the signed id: a blob's name is never trusted for
its content. (A load skips that only for a private blob file that a verification
record under the key vouches for, unchanged since it was last hashed whole: see
`ckpt.verified`.) Writing them is `ckpt.blobwrite`'s.

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

from .chunkhash import CHUNK, chunk_digests
from .errors import CorruptCheckpointError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import hmac
    from typing import IO, Any, Union

    from .blobread import BlobLoader
    from .blobwrite import BlobPlan

    Buffer = Union[bytes, bytearray, memoryview]

MAGIC = b"PYCKPT\x00"
VERSION = 4
READABLE = (1, 2, 3, 4)
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
_BUFFER = struct.Struct("<QI")  # format 4: a buffer's length, its blob's index (0: none)
# Buffers at least this large are stored once per store, as blobs; smaller ones stay
# in the part (a blob costs a file: for small buffers that is more than it saves).
BLOB_MIN = 1 << 20


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


def _pad(offset: int) -> bytes:
    return b"\x00" * (-offset % ALIGN)


class PartWriter:
    """Streams one part to an open binary file, tagging every byte it writes."""

    def __init__(self, stream: IO[bytes], key: bytes,
                 blobs: dict[int, tuple[int, str]] | None = None) -> None:
        import hmac

        self._stream = stream
        self._key = key
        self._mac = hmac.new(key, digestmod="sha256")
        self._offset = 0
        # id() of each buffer stored as a blob: its index in the summary's list, its id
        self._blobs = blobs or {}

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
        from .streamed import host_view, length

        buffers = list(buffers)
        blobs = [self._blobs.get(id(buffer), (0, "")) for buffer in buffers]
        head = _RECORD_HEAD.pack(RECORD, len(buffers), len(inband))
        head += b"".join(_BUFFER.pack(length(buffer), index)
                         for buffer, (index, _) in zip(buffers, blobs))
        self._write(head)
        self._write(inband)
        for buffer, (index, blob) in zip(buffers, blobs):
            if index:  # stored as a blob: its id stands for its bytes
                self._mac.update(bytes.fromhex(blob))
                continue
            view = host_view(buffer)  # small, or no blob store: in the part
            self._write(_pad(self._offset))
            self._mac.update(chunk_digests(view, self._stream.write, writing=True))
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


def write_stream(stream: IO[bytes], key: bytes, summary: dict[str, Any],
                 detail: dict[str, Any], records: Iterable[Any], blobs: Any = None,
                 known: dict[int, tuple[Any, str]] | None = None,
                 fsync: bool = False) -> tuple[bytes, int, BlobPlan | None]:
    """Write one part; large buffers to `blobs` (a `ckpt.blobs.Blobs`), if given.

    A buffer new to the store is written as it is hashed (`ckpt.blobwrite`); the
    header, which names every blob, is written (and flushed) before any other
    blob is put or claimed, so a part being written holds its blobs for `cdip
    gc` (and `Store.publish` puts back any removed meanwhile); a reused local
    blob that nothing vouches for is hashed then, and replaced if it is damaged
    (`blobwrite.put_planned`). Returns the part's tag, the bytes written (blobs
    that were not there yet included) and the plan (None without `blobs`).
    """
    from .blobwrite import BlobPlan, put_planned

    records = list(records)
    summary = {name: value for name, value in summary.items() if name != "blobs"}
    plan = BlobPlan(records, blobs, known, fsync) if blobs is not None else None
    if plan is not None and plan.refs:
        summary["blobs"] = plan.refs
    writer = PartWriter(stream, key, plan.index if plan is not None else None)
    writer.write_header(summary, detail)
    written = plan.written if plan is not None else 0
    if plan is not None and plan.refs:
        stream.flush()
        written += put_planned(plan, blobs, key, fsync)
    for record in records:
        writer.write_record(record.inband, record.buffers)
    tag = writer.finish()
    return tag, writer.size + written, plan


def blob_refs(summary: dict[str, Any]) -> list[tuple[str, int]]:
    """The blobs a part holds, as (id, length), from its summary ([] before format 4).

    Raises:
        CorruptCheckpointError: the list is malformed.
    """
    listed = summary.get("blobs", [])
    refs = []
    if isinstance(listed, list):
        for item in listed:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                    and len(item[0]) == 80 and all(c in "0123456789abcdef" for c in item[0])
                    and type(item[1]) is int and item[1] >= 0):
                break
            refs.append((item[0], item[1]))
        else:
            return refs
    raise CorruptCheckpointError("malformed header: 'blobs'", reason="malformed header ('blobs')")


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


def held_blobs(path: str) -> list[str]:
    """The blob ids a part (or a temporary being written) names, unverified; [] if none.

    For keeping blobs only: a reference can only keep a blob from being removed,
    so a part that does not verify, or is signed elsewhere, still holds its
    blobs. Parts of formats 1 to 3, and what cannot be read, hold none.
    """
    try:
        with open_part(path) as stream:
            head = stream.read(len(MAGIC) + 1)
        if len(head) <= len(MAGIC) or head[len(MAGIC)] < 4:
            return []
        return [blob for blob, _ in blob_refs(read_summary(path, None))]
    except (OSError, CorruptCheckpointError):
        return []


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
        _check_header_tag(path, reader, key)
    return _parse_json(path, summary), _parse_json(path, detail)  # parsed once verified


def _check_header_tag(path: str, reader: _Reader, key: bytes) -> None:
    import hmac

    expected = _label_tag(key, _HEADER_LABEL, reader.head[:-TAG_SIZE])
    if not hmac.compare_digest(expected, reader.head[-TAG_SIZE:]):
        raise _refuse(path, reader.signer, key)


class _Reader:
    def __init__(self, stream: IO[bytes], path: str, mac: hmac.HMAC | None,
                 blobs: BlobLoader | None = None) -> None:
        self._stream = stream
        self._path = path
        self._mac = mac
        self._blobs = blobs
        self.refs: list[tuple[str, int]] = []  # the summary's blobs (format 4), once verified
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
        scratch = memoryview(bytearray(min(length, CHUNK)))
        for start in range(0, length, CHUNK):
            self._fill_tagged(scratch[: min(CHUNK, length - start)])
        return None

    def _fill_tagged(self, view: memoryview) -> None:
        """Read into `view`, tagging it as its format says: chunk digests, or bytes (1)."""
        if self._mac is not None and self.version >= 2:
            self._mac.update(chunk_digests(view, self._fill, writing=False))
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
        if self.version >= 4:
            self._fits(nbuffers * _BUFFER.size)
            entries = [_BUFFER.unpack(self._exact(_BUFFER.size)) for _ in range(nbuffers)]
        else:
            entries = [(_U64.unpack(self._exact(8))[0], 0) for _ in range(nbuffers)]
        inband = self._exact(inband_len)
        buffers = []
        for length, blob in entries:
            if blob:
                stored = self._blob(blob, length, keep)
                if stored is not None:
                    buffers.append(stored)
                continue
            self._exact(-self._offset % ALIGN)
            self._fits(length)
            buffer = self._buffer(length, keep)
            if buffer is not None:
                buffers.append(buffer)
        return Record(inband, buffers)

    def _blob(self, index: int, length: int, keep: bool) -> Buffer | None:
        """A buffer stored as a blob: read and checked against the id its summary signs."""
        if not 0 < index <= len(self.refs) or self.refs[index - 1][1] != length:
            raise _corrupt(self._path, "a buffer's blob is not one its header lists")
        if self._blobs is None:
            raise _corrupt(self._path, "its buffers are in a store's blobs, and it is in none",
                           dead=False)
        blob = self.refs[index - 1][0]
        if self._mac is not None:
            self._mac.update(bytes.fromhex(blob))
        return self._blobs.load(blob, length, keep, self._path)

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


def read_part(path: str, key: bytes | None, blobs: BlobLoader | None = None) -> Part:
    """Read a whole part and verify its tag before returning anything from it.

    With `key` None the tag is not checked (the user said `--trust`); a blob's
    bytes are always checked against its id. Blobs are read through `blobs`
    (share one between the parts of a checkpoint: a blob both hold is read and
    hashed once), by default those of the store the part is in.

    Raises:
        CorruptCheckpointError: the file (or a blob it holds) is missing,
            truncated, altered or signed with another key.
    """
    return _read(path, key, keep=True, blobs=blobs)


def verify_part(path: str, key: bytes) -> bytes:
    """Check a part's tag, keeping nothing (nothing is unpickled); return the tag."""
    return _read(path, key, keep=False).tag


def _read(path: str, key: bytes | None, keep: bool, blobs: BlobLoader | None = None) -> Part:
    with open_part(path) as stream:
        return _read_stream(stream, path, key, keep, blobs)


def _read_stream(stream: IO[bytes], path: str, key: bytes | None, keep: bool,
                 blobs: BlobLoader | None = None) -> Part:
    import hmac

    mac = hmac.new(key, digestmod="sha256") if key is not None else None
    reader = _Reader(stream, path, mac=mac, blobs=blobs)
    summary, detail = reader.headers()
    if reader.version >= 4:
        # the blobs are read with the records: their ids must come from verified headers
        if key is not None:
            _check_header_tag(path, reader, key)
        reader.refs = blob_refs(_parse_json(path, summary))
        if reader._blobs is None:  # a load may skip what a verification record vouches for
            from .blobread import BlobLoader

            reader._blobs = BlobLoader.of_store(os.path.dirname(path), key if keep else None)
        if keep:
            reader._blobs.prefetch(reader.refs, path)
    records = []
    while (record := reader.record_or_end(keep)) is not None:
        records.append(record)
    tag = reader.footer()
    if key is not None and mac is not None and not hmac.compare_digest(tag, mac.digest()):
        raise _refuse(path, reader.signer, key)
    # JSON is parsed only from verified bytes: a crafted header could cost gigabytes
    return Part(_parse_json(path, summary), _parse_json(path, detail), records, tag)

