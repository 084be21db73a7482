"""A store at an fsspec URL (s3://, gs://, az://, memory://): the object-store backend.

Imported only when a store is named by a URL: fsspec and its S3 library cost
hundreds of milliseconds to import, which no local save should pay.

Configuration is the standard one, nothing of ours: credentials from the AWS
environment and config files (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, instance roles),
the endpoint from `AWS_ENDPOINT_URL` or fsspec's config (`FSSPEC_S3_ENDPOINT_URL`,
`~/.config/fsspec/*.json`).

How a reader never sees a partial object, where there is no rename:

- **S3**: an object becomes visible only when its single PUT (under one part)
  or its multipart upload *completes*, and S3 makes either atomic (the upload
  itself is `ckpt.s3upload`: concurrent parts, bounded memory). A
  writer that dies leaves an unfinished multipart upload, which no listing
  shows; `unfinished()` finds it for `cdip gc` (a bucket lifecycle rule
  `AbortIncompleteMultipartUpload` does the same on AWS).
- **put-if-absent** sends `If-None-Match: *` (AWS S3 since 2024, moto, MinIO,
  R2...): a second writer of the same key gets "precondition failed", and its
  upload is aborted. A service that ignores the header lets the second writer
  replace the object, which for a content-addressed blob (its name is the
  hash of its bytes) replaces it with the same bytes: correctness relies only
  on that, the header saves the duplicate upload. `put` also asks first
  (HEAD): a blob that is there is never sent.
- **gs://, az://** use fsspec's deferred commit (`autocommit=False`, then
  `commit`), which gcsfs and adlfs implement as a finalised resumable upload and
  a committed block list (not tested here: no server of theirs on loopback).
  Their put-if-absent is the look first, and content addressing.
- **memory://** (tests) stores an object's bytes in one assignment.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import IO, Any

from .backend import Backend, ObjectInfo, Unfinished, Upload, check_key, split_key
from .errors import CkptError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .backend import Data

# Exception class names (anywhere in the chain) and what they mean for the user;
# matched by name so that no botocore or aiohttp import is needed to recognise them.
_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError",
                   "DefaultCredentialsError", "ClientAuthenticationError"}
_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError",
                "ClientConnectorDNSError", "ServerDisconnectedError", "ConnectionClosedError",
                "ReadTimeoutError", "ClientOSError", "ConnectionRefusedError"}
_NO_BUCKET = {"NoSuchBucket"}


class FsspecBackend(Backend):
    """Objects under a URL's prefix, through fsspec."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._fs, root = _filesystem(self.url)
        self._root = root.rstrip("/")
        protocols = self._fs.protocol
        protocols = (protocols,) if isinstance(protocols, str) else tuple(protocols)
        self._s3 = "s3" in protocols
        self._whole = "memory" in protocols  # its files are visible from their open

    def _path(self, name: str) -> str:
        check_key(name)
        return f"{self._root}/{name}"

    def create(self, name: str, exclusive: bool = False) -> Upload:
        """Start a new object, published whole on commit."""
        path = self._path(name)
        if self._s3:
            from .s3upload import S3Upload

            return S3Upload(self._fs, path, exclusive, self._errors)
        if self._whole:
            return _WholeUpload(self, path, exclusive)
        with self._errors():
            return _DeferredUpload(self, path)

    def open(self, name: str) -> IO[bytes]:
        """A buffered reader of the object (ranged GETs as it is read)."""
        with self._errors():
            stream: IO[bytes] = self._fs.open(self._path(name), "rb")
            return stream

    def read(self, name: str, start: int = 0, length: int | None = None) -> bytes:
        """One ranged GET."""
        end = None if length is None else start + length
        with self._errors():
            data: bytes = self._fs.cat_file(self._path(name), start=start, end=end)
            return data

    def heads(self, names: list[str], length: int) -> dict[str, bytes | OSError]:
        """Ranged GETs, concurrently (fsspec's `gather_batch_size` in flight, 128 by default)."""
        paths = [self._path(name) for name in names]
        with self._errors():
            results = self._fs.cat_ranges(paths, 0, length, on_error="return")
        found: dict[str, bytes | OSError] = {}
        for name, result in zip(names, results):
            if isinstance(result, (bytes, OSError)):
                found[name] = result
            elif isinstance(result, Exception):
                found[name] = OSError(str(self._explain(result)))
        return found

    def objects(self, prefix: str = "", recursive: bool = False) -> list[ObjectInfo]:
        """One LIST request per 1,000 keys (S3 filters by the prefix on the server)."""
        folder, stem = split_key(prefix)
        path = f"{self._root}/{folder}" if folder else self._root
        with self._errors():
            try:
                if self._s3 and (stem or recursive):
                    listed = list(self._fs.find(path, maxdepth=None if recursive else 1,
                                                withdirs=False, detail=True, prefix=stem
                                                ).values())
                elif recursive:
                    listed = list(self._fs.find(path, withdirs=False, detail=True).values())
                else:
                    listed = self._fs.ls(path, detail=True)
            except FileNotFoundError:
                return []  # nothing under the prefix yet
        found = []
        cut = len(path) + 1
        lead = path[len(self._root) + 1:] + "/" if folder else ""
        for info in listed:
            below = info["name"][cut:]  # the path from the prefix's folder
            if info.get("type") == "file" and below.startswith(stem) and (
                    recursive or "/" not in below):
                found.append(ObjectInfo(lead + below, int(info.get("size") or 0), _mtime(info)))
        return found

    def stat(self, name: str) -> ObjectInfo | None:
        """One HEAD request."""
        with self._errors():
            try:
                info = self._fs.info(self._path(name))
            except FileNotFoundError:
                return None
        if info.get("type") != "file":
            return None
        return ObjectInfo(name, int(info.get("size") or 0), _mtime(info))

    def delete(self, name: str) -> None:
        """One DELETE (S3 deletes are idempotent)."""
        with self._errors():
            with contextlib.suppress(FileNotFoundError):
                self._fs.rm_file(self._path(name))

    def unfinished(self) -> list[Unfinished]:
        """S3's incomplete multipart uploads under the prefix (elsewhere: none to see)."""
        if not self._s3:
            return []
        bucket, _, key_root = self._root.partition("/")
        lead = key_root + "/" if key_root else ""
        uploads: list[dict[str, Any]] = []
        markers: dict[str, str] = {}
        with self._errors():
            while True:  # a page holds 1,000
                page = self._fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=lead,
                                        **markers)
                uploads += page.get("Uploads", [])
                if not page.get("IsTruncated"):
                    break
                markers = {"KeyMarker": page["NextKeyMarker"],
                           "UploadIdMarker": page["NextUploadIdMarker"]}
        return [Unfinished(upload["Key"][len(lead):], _mtime(upload), upload["UploadId"])
                for upload in uploads if upload["Key"].startswith(lead)]

    def abort_unfinished(self, write: Unfinished) -> None:
        """Abort an incomplete multipart upload: its parts are deleted."""
        bucket, _, _ = self._root.partition("/")
        key = self._path(write.name).partition("/")[2]
        with self._errors():
            with contextlib.suppress(FileNotFoundError):
                self._fs.abort_mpu(bucket, key, write.handle)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn the service's failures into one clear line each (CkptError)."""
        try:
            yield
        except (CkptError, FileNotFoundError, FileExistsError) as exc:
            if isinstance(exc, FileNotFoundError) and _named(exc, _NO_BUCKET):
                raise self._no_bucket() from exc
            raise
        except Exception as exc:
            raise self._explain(exc) from exc

    def _no_bucket(self) -> CkptError:
        bucket = self._root.partition("/")[0]
        return CkptError(f"no bucket {bucket!r} for the store {self.url}",
                         hint="create it first (ckpt never creates buckets), or fix the URL")

    def _explain(self, exc: Exception) -> CkptError:
        if _named(exc, _NO_CREDENTIALS):
            return CkptError(
                f"no credentials for the store {self.url}",
                hint="configure them the standard way: AWS_ACCESS_KEY_ID and "
                     "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or ~/.aws/credentials")
        if _named(exc, _UNREACHABLE):
            return CkptError(
                f"cannot reach the storage service of {self.url} ({_endpoint(self._fs)})",
                hint="check the network and the endpoint (AWS_ENDPOINT_URL, "
                     "FSSPEC_S3_ENDPOINT_URL)")
        if _named(exc, _NO_BUCKET):
            return self._no_bucket()
        if isinstance(exc, PermissionError):
            return CkptError(f"access denied to the store {self.url}: {exc}",
                             hint="check the credentials and the bucket's policy")
        return CkptError(f"the store {self.url} failed: {type(exc).__name__}: {exc}")


class _DeferredUpload(Upload):
    """fsspec's deferred commit (gs://, az://): parts go up as they fill; `commit` finishes.

    Put-if-absent relies on `put`'s look first and on content addressing (see above).
    """

    def __init__(self, backend: FsspecBackend, path: str) -> None:
        self._backend = backend
        self._file: Any = backend._fs.open(path, "wb", autocommit=False)

    def write(self, data: Data) -> int:
        """Buffer; a full part is uploaded."""
        with self._backend._errors():
            count: int = self._file.write(data)
            return count

    def commit(self) -> bool:
        """Upload the last part and complete: the object appears whole."""
        with self._backend._errors():
            try:
                self._file.close()
                self._file.commit()
                self.published = True
            except FileExistsError:  # If-None-Match: * failed: someone published it first
                self._discard()
                self.published = False
            except BaseException:
                self._discard()
                raise
        return self.published

    def abort(self) -> None:
        """Abort the multipart upload (its parts are deleted)."""
        with self._backend._errors():
            self._discard()

    def _discard(self) -> None:
        # closed first, even if aborting fails (the service is gone): a file left open
        # would be flushed by its finaliser, at exit, retrying against a dead service
        self._file.closed = True
        self._file.discard()


class _WholeUpload(Upload):
    """For memory://, whose open files are visible at once: the bytes go in at commit."""

    def __init__(self, backend: FsspecBackend, path: str, exclusive: bool) -> None:
        self._backend = backend
        self._path = path
        self._exclusive = exclusive
        self._buffer = io.BytesIO()

    def write(self, data: Data) -> int:
        """Buffer."""
        return self._buffer.write(data)

    def commit(self) -> bool:
        """Store the bytes in one step."""
        mode = "create" if self._exclusive else "overwrite"
        try:
            self._backend._fs.pipe_file(self._path, self._buffer.getvalue(), mode=mode)
            self.published = True
        except FileExistsError:
            self.published = False
        self._buffer = io.BytesIO()
        return self.published

    def abort(self) -> None:
        """Drop the buffer."""
        self._buffer = io.BytesIO()


def _filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of a URL and the path under it, or a one-line error."""
    try:
        import fsspec.core  # type: ignore[import-untyped]
    except ImportError as exc:
        raise CkptError(f"a store at a URL ({url}) needs fsspec",
                        hint="pip install 'ckpt[remote]'") from exc
    try:
        # no listings cache: other writers add objects, and a stale listing hides them;
        # no shared instance: credentials are read from this environment, now
        fs, root = fsspec.core.url_to_fs(url, use_listings_cache=False, skip_instance_cache=True)
    except ImportError as exc:  # the scheme's own library (s3fs, gcsfs, adlfs)
        raise CkptError(f"a store at {url} needs a library that is not installed: {exc}",
                        hint="pip install 'ckpt[remote]' and the scheme's own package "
                             "(s3fs, gcsfs or adlfs)") from exc
    except ValueError as exc:
        raise CkptError(f"not a store URL: {url} ({exc})",
                        hint="use s3://bucket/prefix, gs://, az://, memory:// or a path") from exc
    return fs, str(root)


def _named(exc: BaseException, names: set[str]) -> bool:
    """Whether an exception or one it was raised from is of a class named in `names`."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if any(cls.__name__ in names for cls in type(seen).__mro__):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _endpoint(fs: Any) -> str:
    """The endpoint a filesystem talks to, for error messages."""
    endpoint = getattr(fs, "endpoint_url", None) or (getattr(fs, "client_kwargs", None) or {}
                                                      ).get("endpoint_url")
    import os

    return str(endpoint or os.environ.get("AWS_ENDPOINT_URL") or "the default endpoint")


def _mtime(info: dict[str, Any]) -> float:
    """Seconds since the epoch from a listing entry, whatever the service calls it."""
    for key in ("LastModified", "last_modified", "mtime", "updated", "Initiated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            from datetime import datetime

            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        timestamp = getattr(value, "timestamp", None)
        if timestamp is not None:
            return float(timestamp())
    return 0.0
