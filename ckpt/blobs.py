"""The store's content-addressed buffers: every file operation on them, and nothing else.

A large out-of-band buffer (a numpy array's or a tensor's bytes) is stored once
per store, as a file named by its content (`chunkhash.blob_id`), and the parts
that hold it record its id and length in their signed headers. This module only
moves bytes: it never decides what is referenced (`retention` does) nor trusts a
name for its content (`blobread` verifies every byte read through it). A
remote backend (fsspec) goes under exactly this interface.

Layout: ``<store>/blobs/<family>/<id>``. An id is 80 hex digits: its first 16
name its family (the buffer's length and first chunk: see `chunkhash.blob_id`),
so a writer learns from one lookup whether a blob like its buffer may be there
(then it hashes first and writes only what is missing) or certainly is not
(then it writes while it hashes, as fast as a plain write). Temporaries and blobs
set aside for removal start with a dot and are never listed as blobs.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time

from .backend import Backend, LocalBackend
from .errors import CkptError
from .streamed import ChunkReader, StreamedBuffer, changed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator
    from typing import IO, Union

    Buffer = Union[bytes, bytearray, memoryview]

DIRECTORY = "blobs"
_ID = re.compile(r"[0-9a-f]{80}")
FAMILY = 16  # hex digits of an id that name its family (its folder)
_FAMILY = re.compile(r"[0-9a-f]{16}")
# A blob set aside for removal: `.gone-<id>-<random>`, restored if it is still wanted.
_GONE = re.compile(r"\.gone-([0-9a-f]{80})-[0-9a-f]+")
_ABANDONED = 60.0  # seconds after which a blob set aside is its remover's leftover


def is_id(text: str) -> bool:
    """Whether `text` is a blob id (80 lowercase hex digits): the only names ever used."""
    return _ID.fullmatch(text) is not None


class Blobs:
    """The blobs of one store directory (it need not exist yet)."""

    def __init__(self, store_path: str, temp_name: Callable[[], str] | None = None,
                 backend: Backend | None = None) -> None:
        self.root = os.path.join(store_path, DIRECTORY)
        # what every lookup, listing and deletion goes through; the local writes and
        # the rename-aside of `remove` are the directory's own (see `create`, `remove`)
        self.backend = backend if backend is not None else LocalBackend(store_path)
        # An object store: a blob is hashed first, then sent unless it is there
        # (put-if-absent), since an object is named when its upload starts.
        self.remote = not isinstance(self.backend, LocalBackend)
        # The store's own temporary names (they say which process writes them, for gc)
        self._temp_name = temp_name or (lambda: f".tmp-{os.getpid()}-{os.urandom(6).hex()}")

    def _path(self, blob_id: str) -> str:
        if not is_id(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return os.path.join(self.root, blob_id[:FAMILY], blob_id)

    @staticmethod
    def key(blob_id: str) -> str:
        """The object name of a blob: ``blobs/<family>/<id>``."""
        if not is_id(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return f"{DIRECTORY}/{blob_id[:FAMILY]}/{blob_id}"

    def family_exists(self, family: str) -> bool:
        """Whether a blob of this family (length and first chunk) may be there."""
        if not _FAMILY.fullmatch(family):
            raise ValueError(f"not a blob family: {family!r}")
        if self.remote:
            return True  # hash first, then put only what is missing
        try:
            return bool(self.backend.names(f"{DIRECTORY}/{family}/"))
        except CkptError:  # unreadable: not known to be there (writing it says why)
            return False

    def create(self, family: str) -> BlobWriter:
        """A new blob of `family`, written as a stream; it is named once it is whole."""
        if not _FAMILY.fullmatch(family):
            raise ValueError(f"not a blob family: {family!r}")
        folder = os.path.join(self.root, family)
        temporary = os.path.join(folder, self._temp_name())
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        for attempt in range(3):
            try:
                fd = os.open(temporary, flags, 0o600)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
                # the first of its family; or a remover just took the empty folder away
                os.makedirs(folder, mode=0o700, exist_ok=True)
        return BlobWriter(self, os.fdopen(fd, "wb"), temporary)

    def size(self, blob_id: str) -> int | None:
        """The blob's size in bytes, or None when there is none (or it is not a file)."""
        try:
            info = self.backend.stat(self.key(blob_id))
        except OSError:
            return None
        return info.size if info is not None else None

    def exists(self, blob_id: str, length: int) -> bool:
        """Whether a blob of this id and length is there (its bytes are not checked)."""
        return self.size(blob_id) == length

    def claim(self, blob_id: str, length: int) -> bool:
        """Mark an existing blob as in use now (its time); False if it is not there whole.

        A writer that reuses a blob claims it, then checks again once its part is
        published (`Store.publish`): see `remove` for why that is enough.
        """
        if not self.exists(blob_id, length):
            return False
        if self.remote:
            return True  # objects have no time to set: a writer checks again after publishing
        try:
            os.utime(self._path(blob_id))
        except OSError:
            return False
        return True

    def put(self, blob_id: str, data: Buffer | StreamedBuffer, fsync: bool = False) -> int:
        """Store `data` as `blob_id` unless a blob of that id and size is there.

        Written to a private temporary and renamed into place: a reader sees the
        whole blob or none, and two writers of the same blob both succeed (the
        bytes are the same; the last rename wins). Returns the bytes written (0
        when it was there already).
        """
        if isinstance(data, StreamedBuffer):
            nbytes = data.nbytes
        else:
            data = memoryview(data).cast("B")
            nbytes = data.nbytes
        if self.remote:  # one HEAD, then the upload only if it is not there
            from typing import cast  # here: listing imports this module, and never puts

            # as a file: the upload copies it a chunk at a time, and stops (publishing
            # nothing) if the bytes are not what the id says
            source = cast("IO[bytes]", ChunkReader(_checked(data, blob_id)))
            published = self.backend.put(self.key(blob_id), source, exclusive=True)
            return nbytes if published else 0
        if self.claim(blob_id, nbytes):
            return 0
        return self.replace(blob_id, data, fsync)

    def replace(self, blob_id: str, data: memoryview | StreamedBuffer, fsync: bool = False
                ) -> int:
        """Write `data` as `blob_id` whether or not one is there (local stores); the bytes written.

        Written to a private temporary and renamed over any blob of that name: a
        reader that has the old file open or mapped keeps the bytes it had.
        """
        writer = self.create(blob_id[:FAMILY])
        try:
            for chunk in _checked(data, blob_id):
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        writer.commit(blob_id, fsync)
        return data.nbytes

    def put_stream(self, blob_id: str, chunks: Iterable[bytes]) -> int:
        """Store the bytes of `chunks` as `blob_id` (as `put`, from a stream); unchecked.

        Whoever reads the blob checks its bytes against its id.
        """
        writer = self.create(self._family_of(blob_id))
        written = 0
        try:
            for chunk in chunks:
                written += writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        writer.commit(blob_id)
        return written

    def _family_of(self, blob_id: str) -> str:
        if not is_id(blob_id):
            raise ValueError(f"not a blob id: {blob_id!r}")
        return blob_id[:FAMILY]

    def open(self, blob_id: str) -> int:
        """Open a blob for reading (a raw descriptor): a regular file only, no link followed.

        Raises:
            FileNotFoundError: there is no such blob.
            OSError: it is a link or not a regular file (ELOOP, EINVAL), or unreadable.
        """
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(self._path(blob_id), flags | getattr(os, "O_CLOEXEC", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "not a regular file", self._path(blob_id))
        return fd

    def ids(self) -> Iterator[str]:
        """The id of every blob there is (temporaries and set-aside ones left out)."""
        if self.remote:
            yield from self.sizes()
            return
        for family in self.backend.names(f"{DIRECTORY}/"):
            for name in self._names(family + "/"):
                blob_id = name.rpartition("/")[2]
                if is_id(blob_id):
                    yield blob_id

    def sizes(self) -> dict[str, int]:
        """Every blob's size by id (on S3: one LIST request per 1,000 blobs)."""
        if not self.remote:
            return {blob: size for blob in self.ids() if (size := self.size(blob)) is not None}
        return {info.name.rpartition("/")[2]: info.size
                for info in self.backend.objects(f"{DIRECTORY}/", recursive=True)
                if is_id(info.name.rpartition("/")[2])}

    def _names(self, prefix: str) -> list[str]:
        """The names in a family's folder ([] when it is a file, not a folder)."""
        try:
            return self.backend.names(prefix)
        except CkptError as exc:
            if isinstance(exc.__cause__, NotADirectoryError):
                return []
            raise

    def total(self) -> int:
        """The bytes all blobs hold."""
        if self.remote:
            return sum(self.sizes().values())
        return sum(size for size in map(self.size, self.ids()) if size is not None)

    def temporaries(self) -> Iterator[str]:
        """The paths of unfinished writes (named as the store names its temporaries)."""
        for folder, name in self._entries():
            if name.startswith(".tmp-"):
                yield os.path.join(folder, name)

    def _entries(self) -> Iterator[tuple[str, str]]:
        try:
            folders = os.listdir(self.root)
        except FileNotFoundError:
            return
        for prefix in folders:
            folder = os.path.join(self.root, prefix)
            try:
                names = os.listdir(folder)
            except (NotADirectoryError, FileNotFoundError):
                continue
            for name in names:
                yield folder, name

    def remove(self, candidates: Collection[str], referenced: Callable[[], Collection[str]]
               ) -> int:
        """Remove the `candidates` that `referenced()` does not name; return the bytes freed.

        Never races a writer that reuses one: each candidate is first renamed
        aside, and only then is `referenced()` asked (it lists the parts anew).
        A part published before that listing is seen, and its blobs are put
        back; a writer that published after the rename finds its blob missing
        when it checks (`Store.publish`) and writes it again. Blobs set aside by
        a remover that died meanwhile are settled here too.
        """
        if self.remote:
            return self._delete(candidates, referenced)
        aside = [(blob_id, path) for blob_id, path in self._set_aside()]
        for blob_id in candidates:
            final = self._path(blob_id)
            moved = os.path.join(os.path.dirname(final), f".gone-{blob_id}-{os.urandom(4).hex()}")
            try:
                os.rename(final, moved)
            except FileNotFoundError:
                continue
            aside.append((blob_id, moved))
        freed = 0
        if aside:
            wanted = set(referenced())
            for blob_id, moved in aside:
                if blob_id in wanted and _restore(moved, self._path(blob_id)):
                    continue
                freed += _unlink(moved)
        self._tidy()
        return freed

    def _delete(self, candidates: Collection[str], referenced: Callable[[], Collection[str]]
                ) -> int:
        """Remote: delete the candidates no part names (asked after listing them).

        There is no rename to set one aside: a writer that reuses a blob checks
        again once its part is published, and uploads it again if it went.
        """
        sizes = self.sizes()
        wanted = set(referenced())
        freed = 0
        for blob_id in candidates:
            if blob_id in sizes and blob_id not in wanted:
                self.backend.delete(self.key(blob_id))
                freed += sizes[blob_id]
        return freed

    def _tidy(self) -> None:
        """Remove the folders left empty (a writer that finds one gone makes it again)."""
        try:
            folders = os.listdir(self.root)
        except OSError:
            return
        for prefix in folders:
            try:
                os.rmdir(os.path.join(self.root, prefix))
            except OSError:
                pass
        try:
            os.rmdir(self.root)
        except OSError:
            pass

    def _set_aside(self) -> Iterator[tuple[str, str]]:
        """Blobs set aside by a remover that died: a minute since (a live one is quick)."""
        for folder, name in self._entries():
            match = _GONE.fullmatch(name)
            if match is None:
                continue
            path = os.path.join(folder, name)
            try:
                moved_at = os.lstat(path).st_ctime  # a rename sets it
            except OSError:
                continue
            if time.time() - moved_at > _ABANDONED:
                yield match.group(1), path


class BlobWriter:
    """One blob being written: to a private temporary, named by `commit` once whole."""

    def __init__(self, blobs: Blobs, stream: IO[bytes], temporary: str) -> None:
        self._blobs = blobs
        self._stream = stream
        self._temporary = temporary

    def write(self, data: Buffer) -> int:
        """Append bytes."""
        return self._stream.write(data)

    def write_at(self, data: Buffer, offset: int) -> None:
        """Write bytes at `offset` (not mixed with `write`): threads may write chunks at once."""
        view = memoryview(data).cast("B")
        while view.nbytes:
            done = os.pwrite(self._stream.fileno(), view, offset)
            view, offset = view[done:], offset + done

    def commit(self, blob_id: str, fsync: bool = False) -> None:
        """Name the blob `blob_id` (its content's id); one there already is replaced.

        The same id means the same bytes, so two writers of one blob both succeed.
        """
        try:
            if fsync:
                self._stream.flush()
                os.fsync(self._stream.fileno())
            self._stream.close()
            final = self._blobs._path(blob_id)
            if os.path.dirname(final) != os.path.dirname(self._temporary):
                raise ValueError(f"blob {blob_id} is not of this writer's family")
            os.replace(self._temporary, final)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Give up: nothing is left behind (the family's folder goes if it is empty)."""
        self._stream.close()
        _unlink(self._temporary)
        for empty in (os.path.dirname(self._temporary), self._blobs.root):
            try:
                os.rmdir(empty)
            except OSError:
                break


def _checked(data: memoryview | StreamedBuffer, blob_id: str) -> Iterator[memoryview]:
    """`data`'s bytes a chunk at a time, checked: raises after the last unless they are `blob_id`'s.

    The bytes were hashed to name the blob, but they live in the user's memory (or on a
    device): another thread may have written into them since. A writer aborts, and an
    upload stops, rather than store other bytes under the id. Each chunk is a copy
    (valid until the next is taken), checked and written alike: a write into the
    user's memory after a chunk's check cannot reach the blob.
    """
    from .chunkhash import CHUNK, sha256
    from .chunkhash import blob_id as content_id

    if isinstance(data, StreamedBuffer):
        chunks: Iterable[memoryview] = data.chunks(CHUNK, 1)  # copies already
    else:
        chunks = _copies(data, CHUNK)
    digests = []
    for chunk in chunks:
        digests.append(sha256(chunk))
        yield chunk
    if content_id(data.nbytes, b"".join(digests)) != blob_id:
        raise changed(data.nbytes)


def _copies(data: memoryview, size: int) -> Iterator[memoryview]:
    """`data` `size` bytes at a time, each copied into one reused buffer."""
    scratch = memoryview(bytearray(min(size, data.nbytes)))
    for start in range(0, data.nbytes, size):
        chunk = scratch[: min(size, data.nbytes - start)]
        chunk[:] = data[start : start + size]
        yield chunk


def _restore(moved: str, final: str) -> bool:
    """Put a set-aside blob back, unless a writer has put it again meanwhile."""
    try:
        os.link(moved, final)
    except FileExistsError:
        return False  # a writer put it again: the copy aside goes
    except FileNotFoundError:
        return True  # another remover settled it already
    except OSError:
        try:
            os.replace(moved, final)  # a file system without hard links
        except FileNotFoundError:
            pass
        return True
    _unlink(moved)
    return True


def _unlink(path: str) -> int:
    """Delete a file; return its size (0 if it was gone already)."""
    try:
        size = os.lstat(path).st_size
        os.unlink(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return 0
    return size
