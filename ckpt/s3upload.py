"""One S3 object written as a stream: parts sent concurrently, memory bounded, published whole.

s3fs's own file sends one 50 MiB part at a time and holds about three copies
of it; `put_file` is concurrent but needs the bytes in a file first. This sends
`PART` bytes per part with up to `IN_FLIGHT` parts on the wire at once (on
fsspec's event loop: no thread of ours), so a writer holds at most
`(IN_FLIGHT + 1) * PART` bytes, whatever the object's size.

Nothing is visible until `commit`: an object smaller than a part goes as one
PUT then; a larger one is a multipart upload, which S3 shows only once
CompleteMultipartUpload succeeds. Put-if-absent sends `If-None-Match: *` with
whichever of the two publishes (see `ckpt.remote`).
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any

from .backend import Upload

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .backend import Data

PART = 16 << 20
IN_FLIGHT = 4
# S3 allows 10,000 parts: every 1,000 parts, parts double (16 MiB parts reach 15 GiB,
# and the sizes grow so that no object S3 can hold runs out of part numbers).
_GROW_EVERY = 1000


class S3Upload(Upload):
    """A new S3 object: buffered into parts, sent while the writer goes on."""

    def __init__(self, fs: Any, path: str, exclusive: bool,
                 errors: Callable[[], contextlib.AbstractContextManager[None]]) -> None:
        _quiet_dropped_bodies(fs.loop)
        self._fs = fs
        self._bucket, _, self._key = path.partition("/")
        self._match = {"IfNoneMatch": "*"} if exclusive else {}
        self._errors = errors
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._sent: list[Future[dict[str, Any]]] = []

    def write(self, data: Data) -> int:
        """Buffer; each full part is sent (waiting only when IN_FLIGHT are on the wire)."""
        view = memoryview(data).cast("B")
        with self._errors():
            start = 0
            while start < view.nbytes:
                size = self._part_size()
                if not self._buffer and view.nbytes - start >= size:
                    # a whole part in hand: copied once, straight from the caller's bytes
                    self._send(bytes(view[start : start + size]))
                    start += size
                    continue
                room = size - len(self._buffer)
                self._buffer += view[start : start + room]
                start += room
                if len(self._buffer) >= size:
                    self._send_buffer()
        return view.nbytes

    def _part_size(self) -> int:
        return PART << (len(self._sent) // _GROW_EVERY)

    def _send_buffer(self) -> None:
        # bytes, not the bytearray: aiohttp sends bytes as they are, but copies a bytearray
        # (a stream instead would save another copy, at half the speed: measured)
        body, self._buffer = bytes(self._buffer), bytearray()
        self._send(body)

    def _send(self, body: bytes) -> None:
        if self._upload_id is None:
            started = self._call("create_multipart_upload", Bucket=self._bucket, Key=self._key)
            self._upload_id = started.result()["UploadId"]
        number = len(self._sent) + 1
        self._sent.append(self._call("upload_part", Bucket=self._bucket, Key=self._key,
                                     UploadId=self._upload_id, PartNumber=number, Body=body))
        # wait on the parts still on the wire only: `wait` returns at once when any of
        # those it is given is done, and a loop over them all spun, taking the GIL from
        # the event loop that sends them (a 256 MiB put took 7.6 s of CPU, not 0.5)
        pending = [part for part in self._sent if not part.done()]
        while len(pending) >= IN_FLIGHT:
            _, waiting = wait(pending, return_when=FIRST_COMPLETED)
            pending = list(waiting)
        for part in self._sent:
            if part.done() and part.exception() is not None:
                part.result()  # a part failed: raise now, not at commit

    def _call(self, method: str, **kwargs: Any) -> Future[dict[str, Any]]:
        """Start one S3 request on fsspec's event loop; its result is waited for later."""
        return asyncio.run_coroutine_threadsafe(self._fs._call_s3(method, **kwargs),
                                                self._fs.loop)

    def commit(self) -> bool:
        """Send the rest and publish: one PUT, or complete the multipart upload."""
        with self._errors():
            try:
                if self._upload_id is None:
                    self._call("put_object", Bucket=self._bucket, Key=self._key,
                               Body=bytes(self._buffer), **self._match).result()
                else:
                    if self._buffer:
                        self._send_buffer()
                    parts = [{"PartNumber": number, "ETag": part.result()["ETag"]}
                             for number, part in enumerate(self._sent, 1)]
                    self._call("complete_multipart_upload", Bucket=self._bucket, Key=self._key,
                               UploadId=self._upload_id, MultipartUpload={"Parts": parts},
                               **self._match).result()
                self.published = True
            except FileExistsError:  # If-None-Match: * failed: another writer published it
                self._abort()
                self.published = False
            except BaseException:
                self._abort()
                raise
        return self.published

    def abort(self) -> None:
        """Abort the multipart upload: S3 deletes its parts."""
        with self._errors():
            self._abort()

    def _abort(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        # parts still on the wire would outlive an abort sent before them
        wait(self._sent)
        with contextlib.suppress(FileNotFoundError):  # aborted already (NoSuchUpload)
            self._call("abort_multipart_upload", Bucket=self._bucket, Key=self._key,
                       UploadId=upload_id).result()


def _quiet_dropped_bodies(loop: asyncio.AbstractEventLoop) -> None:
    """Keep aiohttp's report of a request body cut off by a dropped connection off stderr.

    When the server goes away mid-upload, the request fails (and the user is told, in
    one line), but aiohttp's task writing its body fails too, and nobody retrieves its
    exception: asyncio then prints "Task exception was never retrieved" with a
    traceback into the user's program. Only that report is dropped, on fsspec's own
    loop; every other goes to the handler there was.
    """
    if getattr(loop, "_ckpt_quiet", False):
        return
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        task = context.get("future")
        coroutine = task.get_coro() if isinstance(task, asyncio.Task) else None
        if (isinstance(context.get("exception"), ConnectionError)
                and getattr(coroutine, "__qualname__", "") == "ClientRequest.write_bytes"):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    loop._ckpt_quiet = True  # type: ignore[attr-defined]
