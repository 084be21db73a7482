"""Where a store's bytes live: one small interface, a local directory behind it, or a URL.

A backend only moves bytes: it names nothing, verifies nothing and decides
nothing (the store names and finds, retention decides what goes). Objects are
named by '/'-separated keys relative to the store's root.

The promise every backend keeps: **a reader never sees a partial object**.
An object is written through an `Upload` that publishes it whole on `commit`,
or leaves nothing on `abort` (and nothing listed if the writer dies):

- the local directory writes a private temporary in the store and renames it
  into place (`os.replace`, or `os.link` for put-if-absent): a rename is atomic;
  a temporary left by a killed writer is never listed, and `cdip gc` removes it
  once its writer is provably gone;
- an object store has no rename: see `ckpt.remote` (S3 makes an object visible
  only when its single PUT or its multipart upload completes).

`open_backend` picks one from a path or a URL; `import ckpt` never imports
fsspec: only a URL does.
"""

from __future__ import annotations

import errno
import os
import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import IO, Any, Union

    # What an object can be written from without a copy.
    Data = Union[bytes, bytearray, memoryview]

# Copying a stream into an object moves this much at a time.
COPY_CHUNK = 1 << 20
# A local write in progress: `.tmp-PID-RANDOM-HOST@PIDNS` (see `temporary_name`).
TEMP_PREFIX = ".tmp-"


class _Record:
    """A few named fields, compared and shown by value (typing.NamedTuple costs an import)."""

    __slots__: tuple[str, ...] = ()

    def _fields(self) -> tuple[Any, ...]:
        return tuple(getattr(self, field) for field in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Record) and type(other) is type(self) and (
            self._fields() == other._fields())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{field}={getattr(self, field)!r}" for field in self.__slots__)
        return f"{type(self).__name__}({shown})"


class ObjectInfo(_Record):
    """One object as a listing sees it: its key, its size in bytes, when it was written."""

    __slots__ = ("mtime", "name", "size")

    def __init__(self, name: str, size: int, mtime: float) -> None:
        self.name, self.size, self.mtime = name, size, mtime


class Unfinished(_Record):
    """A write that never published (a local temporary, an S3 multipart upload).

    Never listed as an object; `Backend.abort_unfinished` removes it.
    `handle` is the backend's own reference to it.
    """

    __slots__ = ("handle", "name", "started")

    def __init__(self, name: str, started: float, handle: str) -> None:
        self.name, self.started, self.handle = name, started, handle


class Upload:
    """A new object being written: invisible until `commit`, gone after `abort`.

    As a context manager it commits when the block ends normally and aborts
    when it raises. `published` says what `commit` did: True, or False when the
    object was put-if-absent and one was already there (the bytes were dropped).
    """

    published: bool | None = None

    def write(self, data: Data) -> int:
        """Append bytes; return how many."""
        raise NotImplementedError

    def commit(self) -> bool:
        """Make the object visible, whole, at once; return `published`."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop what was written; nothing becomes visible."""
        raise NotImplementedError

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if kind is None:
            self.commit()
            return
        try:
            self.abort()
        except Exception:  # noqa: S110
            pass  # the write's own error is the one to see; what is left is `cdip gc`'s


class Backend:
    """The interface a store sits on (a few methods, as httpx's BaseTransport)."""

    url: str

    def create(self, name: str, exclusive: bool = False) -> Upload:
        """Start writing object `name`; with `exclusive`, publish only if it is absent."""
        raise NotImplementedError

    def put(self, name: str, data: Data | IO[bytes], exclusive: bool = False) -> bool:
        """Publish `data` (bytes, or a readable stream copied in chunks) as object `name`.

        Returns False when `exclusive` and the object was already there (for a
        content-addressed blob: nothing to upload).
        """
        if exclusive and self.stat(name) is not None:
            return False  # the common case for a blob: no bytes sent at all
        with self.create(name, exclusive) as upload:
            if isinstance(data, (bytes, bytearray, memoryview)):
                upload.write(data)
            else:
                _copy(data, upload)
        return bool(upload.published)

    def open(self, name: str) -> IO[bytes]:
        """Open object `name` for streaming reads.

        Raises:
            FileNotFoundError: there is no such object.
        """
        raise NotImplementedError

    def read(self, name: str, start: int = 0, length: int | None = None) -> bytes:
        """Bytes `start` to `start + length` of an object (to its end if None): one request."""
        with self.open(name) as stream:
            stream.seek(start)
            return stream.read(-1 if length is None else length)

    def heads(self, names: list[str], length: int) -> dict[str, bytes | OSError]:
        """The first `length` bytes of each object (what listing verifies: its summary).

        Remote backends fetch them concurrently (one ranged GET each, many in
        flight). An object that cannot be read maps to its error (FileNotFoundError:
        deleted meanwhile), so one bad object never hides the others.
        """
        found: dict[str, bytes | OSError] = {}
        for name in names:
            try:
                found[name] = self.read(name, 0, length)
            except OSError as exc:
                found[name] = exc
        return found

    def names(self, prefix: str = "") -> list[str]:
        """The keys that start with `prefix`, in the folder `prefix` names; never recursive.

        `blobs/ab` lists `blobs/ab...` but not `blobs/ab/c`. Unfinished writes
        are never listed. Cheaper than `objects` where sizes cost extra (locally).
        """
        return [info.name for info in self.objects(prefix)]

    def objects(self, prefix: str = "", recursive: bool = False) -> list[ObjectInfo]:
        """As `names`, with each object's size and time (one LIST request per 1,000 on S3).

        With `recursive`, the objects at any depth under the prefix's folder whose
        path from that folder starts with the prefix's last part (`blobs/` lists
        every blob of every family: on S3 still one request per 1,000).
        """
        raise NotImplementedError

    def stat(self, name: str) -> ObjectInfo | None:
        """Object `name`'s size and time, or None when there is no such object."""
        raise NotImplementedError

    def delete(self, name: str) -> None:
        """Delete object `name`; one already gone is fine."""
        raise NotImplementedError

    def unfinished(self) -> list[Unfinished]:
        """Writes under this store that never published, for `cdip gc` to judge."""
        raise NotImplementedError

    def abort_unfinished(self, write: Unfinished) -> None:
        """Remove an unfinished write (one already gone is fine)."""
        raise NotImplementedError


def _copy(source: IO[bytes], upload: Upload) -> None:
    """Copy a stream into an upload through one reused buffer (never the whole in memory)."""
    buffer = bytearray(COPY_CHUNK)
    view = memoryview(buffer)
    readinto = getattr(source, "readinto", None)
    while True:
        if readinto is not None:
            count = readinto(buffer)
            if not count:
                return
            upload.write(view[:count])
        else:
            chunk = source.read(COPY_CHUNK)
            if not chunk:
                return
            upload.write(chunk)


def check_key(name: str) -> None:
    """Refuse an object key that is not a plain relative path (keys are ours, never a user's).

    Raises:
        ValueError: empty, absolute, or with an empty, `.` or `..` part.
    """
    parts = name.split("/")
    if not name or "\0" in name or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"not an object key: {name!r}")


def split_key(prefix: str) -> tuple[str, str]:
    """('folder', 'stem') of a listing prefix: 'blobs/ab' -> ('blobs', 'ab'); 'x' -> ('', 'x')."""
    folder, _, stem = prefix.rpartition("/")
    if folder:
        check_key(folder)
    return folder, stem


class LocalBackend(Backend):
    """A directory: private temporaries renamed into place, regular files only, no links.

    What `ckpt.store` has always done: temporaries named `.tmp-PID-RANDOM-HOST@PIDNS`
    in the store itself (so `cdip gc` can tell a dead writer's from a live one's),
    mode 0600 in a directory made 0700, read only through `fileformat.open_part`
    (O_NOFOLLOW, regular files only, a FIFO never blocks).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.url = self.path

    def _path(self, name: str) -> str:
        check_key(name)
        return os.path.join(self.path, *name.split("/"))

    def create(self, name: str, exclusive: bool = False) -> Upload:
        """Start writing object `name` into a private temporary of the store."""
        return _LocalUpload(self, self._path(name), exclusive)

    def open(self, name: str) -> IO[bytes]:
        """Open a regular file of the store, never through a link (see `open_part`)."""
        from .fileformat import open_part

        return open_part(self._path(name))

    def names(self, prefix: str = "") -> list[str]:
        """File names as `os.listdir` gives them (no stat), less temporaries."""
        folder, stem = split_key(prefix)
        listed = _listdir(os.path.join(self.path, folder) if folder else self.path)
        lead = folder + "/" if folder else ""
        return [lead + entry for entry in listed
                if entry.startswith(stem) and not entry.startswith(TEMP_PREFIX)]

    def objects(self, prefix: str = "", recursive: bool = False) -> list[ObjectInfo]:
        """Regular files only: a link to a huge file elsewhere weighs nothing."""
        found = []
        for name in self._walk(prefix) if recursive else self.names(prefix):
            info = self.stat(name)
            if info is not None:
                found.append(info)
        return found

    def _walk(self, prefix: str) -> list[str]:
        """The names at any depth under the prefix's folder that start with its last part."""
        folder, stem = split_key(prefix)
        top = os.path.join(self.path, folder) if folder else self.path
        skip = len(folder) + 1 if folder else 0  # the path from the prefix's folder
        found = []
        for directory, _, files in os.walk(top):  # never into a link to a folder
            relative = os.path.relpath(directory, self.path).replace(os.sep, "/")
            lead = "" if relative == "." else relative + "/"
            found += [lead + entry for entry in files if not entry.startswith(TEMP_PREFIX)
                      and (lead + entry)[skip:].startswith(stem)]
        return found

    def stat(self, name: str) -> ObjectInfo | None:
        """A regular file's size and time (lstat: a link is not an object)."""
        import stat

        try:
            info = os.lstat(self._path(name))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return ObjectInfo(name, info.st_size, info.st_mtime)

    def delete(self, name: str) -> None:
        """Unlink a file; gone already, or a directory someone made there, is left be."""
        discard(self._path(name))

    def unfinished(self) -> list[Unfinished]:
        """The store's temporaries (whether their writer lives is retention's question)."""
        found = []
        for entry in _listdir(self.path):
            if entry.startswith(TEMP_PREFIX):
                try:
                    started = os.lstat(os.path.join(self.path, entry)).st_mtime
                except OSError:
                    continue
                found.append(Unfinished(entry, started, entry))
        return found

    def abort_unfinished(self, write: Unfinished) -> None:
        """Delete a temporary."""
        if write.handle.startswith(TEMP_PREFIX) and "/" not in write.handle:
            discard(os.path.join(self.path, write.handle))

    def open_temporary(self) -> tuple[str, IO[bytes]]:
        """A new private temporary file in the store (made 0700 by the first write), 0600."""
        path = os.path.join(self.path, temporary_name())
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:  # the first save: no stat on every save to find out
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            fd = os.open(path, flags, 0o600)
        return path, os.fdopen(fd, "wb")

    def publish_temporary(self, temporary: str, name: str) -> None:
        """Rename a finished temporary (from `open_temporary`) into place as object `name`."""
        os.replace(temporary, self._path(name))


def temporary_name() -> str:
    """A fresh temporary's name: it says which process writes it (see `retention`)."""
    return f"{TEMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}-{HOST}@{PID_NS}"


HOST = re.sub(r"[^A-Za-z0-9.]", "_", os.uname().nodename if hasattr(os, "uname") else "")[:64]


def _pid_namespace() -> str:
    """This process's PID namespace (Linux), so pids are compared only within one."""
    try:
        return re.sub(r"[^0-9]", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        return ""


PID_NS = _pid_namespace()


def discard(path: str) -> None:
    """Delete a file; one removed meanwhile by someone else is fine."""
    try:
        os.unlink(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        pass  # gone already, or a directory someone made there: not ours to remove


def _listdir(path: str) -> list[str]:
    """A folder's names ([] while it does not exist: the first save makes it)."""
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError as exc:
        from .errors import CkptError

        raise CkptError(f"cannot read the store {path}: {exc.strerror}") from exc


class _LocalUpload(Upload):
    """A private temporary, renamed into place on commit."""

    def __init__(self, backend: LocalBackend, final: str, exclusive: bool) -> None:
        self._final = final
        self._exclusive = exclusive
        self._temporary, self._stream = backend.open_temporary()

    def write(self, data: Data) -> int:
        """Append to the temporary."""
        return self._stream.write(data)

    def commit(self) -> bool:
        """Rename the temporary into place (link it, for put-if-absent)."""
        try:
            if os.environ.get("PYCKPT_FSYNC") == "1":
                self._stream.flush()
                os.fsync(self._stream.fileno())
            self._stream.close()
            folder = os.path.dirname(self._final)
            try:
                self.published = self._publish()
            except FileNotFoundError:  # the first object in a new folder (blobs/ab/)
                os.makedirs(folder, mode=0o700, exist_ok=True)
                self.published = self._publish()
        finally:
            discard(self._temporary)  # gone after a rename; after a link, a second name
        return self.published

    def _publish(self) -> bool:
        if not self._exclusive:
            os.replace(self._temporary, self._final)
            return True
        try:
            os.link(self._temporary, self._final)  # atomic, and fails if one is there
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            # no hard links here (some network and FUSE file systems): a blob is named
            # by its content, so replacing one that appeared meanwhile changes nothing
            if os.path.lexists(self._final):
                return False
            os.replace(self._temporary, self._final)
        return True

    def abort(self) -> None:
        """Close and delete the temporary."""
        self._stream.close()
        discard(self._temporary)


def open_backend(url_or_path: str | os.PathLike[str]) -> Backend:
    """The backend of a store named by a path, a `file://` URL, or any fsspec URL.

    A plain path and `file://` are the local directory (its safety checks are
    `ckpt.location`'s); `s3://`, `gs://`, `az://`, `memory://`... go through fsspec,
    configured the standard way (credentials and endpoints from the environment and
    fsspec's config: `AWS_PROFILE`, `AWS_ACCESS_KEY_ID`, `FSSPEC_S3_ENDPOINT_URL`...).

    Raises:
        CkptError: fsspec, or the library of the URL's scheme, is not installed.
    """
    text = os.fspath(url_or_path)
    if text.startswith("file://"):
        return LocalBackend(text[len("file://"):] or "/")
    if not is_url(text):
        return LocalBackend(text)
    from .remote import FsspecBackend

    return FsspecBackend(text)


def is_url(text: str) -> bool:
    """Whether a store's name is a URL (`scheme://...`, RFC 3986) rather than a path."""
    scheme, separator, _ = text.partition("://")
    return bool(separator) and scheme[:1].isalpha() and scheme.isascii() and all(
        char.isalnum() or char in "+.-" for char in scheme)
