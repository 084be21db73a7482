"""Verification records: a blob hashed in full need not be hashed again while its file is unchanged.

As git's index trusts stat data to skip re-hashing a file, a load trusts a blob
without hashing it when a *record* says: this blob id was last hashed in full and
matched, and its file then had this device, inode, size, mtime and ctime, in this
boot. A record is made when the writer hashed exactly the bytes it wrote (at
capture, once the save settled: see `record_written`) or when a load hashed the
blob and it matched. It is an HMAC under the user's key (under its own label), so
no one without the key can make one; it lives in ``<store>/.verified/<blob id>``
(one small file per blob, replaced atomically: concurrent writers just race to
write the same kind of line; the folder is pruned of records whose blob is gone).

Why the stat data is enough: ctime cannot be set by an unprivileged process, and
any write to the file, chmod, link or rename changes it (on Linux 6.13 and later
a change right after a stat always gets a new timestamp; before that, a change
within the same clock tick as the recorded one could keep it); a replaced file
has another inode; a reboot changes the boot id, so bytes a crash lost before
they reached the disk are hashed again after restart. Only blobs that the load
would map in place are eligible (owned by the user, writable by no one else),
and only in a store no one else can change (`ownership.changeable_by_others`).
What it does not see: a change made beneath the file system (a disk's bit rot,
a raw write to the block device, root editing the disk), and a change by this
user within one clock tick of the record on an older kernel.
``PYCKPT_VERIFY=always`` turns records off: every load hashes every blob.
"""

from __future__ import annotations

import contextlib
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

VARIABLE = "PYCKPT_VERIFY"
FOLDER = ".verified"
_LABEL = b"ckpt verified blob\x00"
_BOOT_ID = "/proc/sys/kernel/random/boot_id"
# A load records a blob only if its ctime was older than this when it was opened: a
# file system whose timestamps are coarse could otherwise give a later change the same
# ctime (git's "racily clean" files). Capture records what it just wrote regardless.
_SETTLED_NS = 2_000_000_000
_MAX_RECORD = 512
# Past this many records, a new one prunes those whose blob is gone (each is ~250 bytes
# for a blob of 1 MiB or more: the folder stays a tiny fraction of the blobs).
_PRUNE_OVER = 256

_boot: list[str | None] = []


def boot_id() -> str | None:
    """This boot's id (None where the system has none: then nothing is recorded)."""
    if not _boot:
        try:
            with open(_BOOT_ID, encoding="ascii") as file:
                _boot.append(file.read(64).strip() or None)
        except OSError:
            _boot.append(None)
    return _boot[0]


def wanted() -> bool:
    """Whether records may be used (PYCKPT_VERIFY=always: every load hashes every byte)."""
    return os.environ.get(VARIABLE, "").strip().lower() != "always"


class Records:
    """The verification records of one store, under one key."""

    def __init__(self, store_path: str, key: bytes) -> None:
        self._store = store_path
        self._folder = os.path.join(store_path, FOLDER)
        self._key = key

    @classmethod
    def of(cls, store_path: str, key: bytes | None) -> Records | None:
        """The records of a store, or None where none may be used (no key, not private...)."""
        if key is None or not wanted() or boot_id() is None:
            return None
        from .ownership import changeable_by_others

        if changeable_by_others(store_path) is not None:
            return None
        return cls(store_path, key)

    def trusts(self, blob: str, info: os.stat_result) -> bool:
        """Whether a valid record says the blob's file, as `info` shows it, matched `blob`."""
        import hmac

        try:
            fd = os.open(self._path(blob), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return False
        try:
            found = os.read(fd, _MAX_RECORD)
        except OSError:
            return False
        finally:
            os.close(fd)
        expected = self._signed(blob, info)
        return expected is not None and hmac.compare_digest(found, expected)

    def record(self, blob: str, info: os.stat_result) -> None:
        """Record that the blob's file, as `info` shows it, hashed to `blob`; never raises."""
        line = self._signed(blob, info)
        if line is None:
            return
        temporary = os.path.join(self._folder, f".tmp-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.makedirs(self._folder, mode=0o700, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_CLOEXEC", 0), 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
            os.replace(temporary, self._path(blob))
            self._prune()
        except OSError:
            try:
                os.unlink(temporary)
            except OSError:
                pass

    def hashed(self, blob: str, fd: int, before: os.stat_result, opened_ns: int) -> None:
        """A load hashed the blob open at `fd` and it matched: record it if that is sound.

        Only if the file did not change while it was hashed, and its ctime was
        already old when it was opened (a later change then gets another one).
        """
        try:
            after = os.fstat(fd)
        except OSError:
            return
        if _identity(after) == _identity(before) and opened_ns - before.st_ctime_ns > _SETTLED_NS:
            self.record(blob, before)

    def _path(self, blob: str) -> str:
        return os.path.join(self._folder, blob)

    def _signed(self, blob: str, info: os.stat_result) -> bytes | None:
        import hmac

        boot = boot_id()
        if boot is None:
            return None
        fields = " ".join(map(str, (blob, *_identity(info), boot))).encode()
        tag = hmac.digest(self._key, _LABEL + fields, "sha256").hex().encode()
        return fields + b" " + tag + b"\n"

    def _prune(self) -> None:
        names = os.listdir(self._folder)
        if len(names) <= _PRUNE_OVER:
            return
        from .blobs import Blobs

        blobs = Blobs(self._store)
        for name in names:
            path = os.path.join(self._folder, name)
            if name.startswith(".") and not _abandoned(path):
                continue  # a record being written
            if name.startswith(".") or blobs.size(name) is None:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def _abandoned(path: str) -> bool:
    """Whether a temporary record was left by a writer long gone (a minute: writing is quick)."""
    import time

    try:
        return time.time() - os.lstat(path).st_mtime > 60
    except OSError:
        return False


def _identity(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


# Blobs this process wrote while hashing them, not yet recorded: (store, key) -> {id: file}.
# Recorded once the save has settled (`Store.publish` claims its blobs, which sets their
# times): see `record_written`.
_written: dict[tuple[str, bytes], dict[str, tuple[int, int, int]]] = {}


def note_written(blobs: Any, written: list[str], reused: list[str], key: bytes) -> None:
    """Remember the files of a save's blobs, to record once it has settled (`record_written`).

    `written`: the writer just wrote them, hashing exactly the bytes it wrote.
    `reused`: there already; each is remembered only if a valid record vouches
    for its file right now, before the save claims it (a claim sets its times,
    which would leave the record stale and the next load hashing it).
    """
    root = getattr(blobs, "root", None)
    if not isinstance(root, str) or not wanted() or not (written or reused):
        return  # not a local store's blobs, or nothing to note
    with contextlib.suppress(Exception):  # a record saves time only: never fails a save
        _note(blobs, os.path.dirname(root), written, reused, key)


def noted(blobs: Any, blob: str, key: bytes, info: os.stat_result) -> bool:
    """Whether the save under way noted the blob's file as `info` shows it, not yet recorded.

    A blob it wrote, or found vouched for or hashed whole before claiming it: a
    later part of the same save (an error's, after its call's) finds its record
    stale (the first claim set its times) and need not hash it again.
    """
    root = getattr(blobs, "root", None)
    if not isinstance(root, str):
        return False
    file = _written.get((os.path.dirname(root), key), {}).get(blob)
    return file == (info.st_dev, info.st_ino, info.st_size)


def blob_stat(blobs: Any, blob: str) -> os.stat_result | None:
    """The blob's file status, as opened (never through a link); None when it is gone."""
    try:
        fd = blobs.open(blob)
    except (OSError, ValueError):
        return None
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


def _note(blobs: Any, store: str, written: list[str], reused: list[str], key: bytes) -> None:
    records = Records.of(store, key) if reused else None
    for blob in (*written, *reused):
        info = blob_stat(blobs, blob)
        if info is None:
            continue
        if blob in written or (records is not None and records.trusts(blob, info)):
            _written.setdefault((store, key), {})[blob] = (info.st_dev, info.st_ino, info.st_size)


def record_written() -> None:
    """Record the blobs of this process's save, now that it has settled; never raises.

    Still the same file (device, inode, size) as `note_written` found it: nothing
    but this save (its claims, which only set the file's times) touched it since,
    unless this user's own process wrote into it within that moment.
    """
    while _written:
        try:
            (store, key), written = _written.popitem()
        except KeyError:  # another thread took the last one
            return
        with contextlib.suppress(Exception):  # a record saves time only: never fails a save
            _record(store, key, written)


def _record(store: str, key: bytes, written: dict[str, tuple[int, int, int]]) -> None:
    records = Records.of(store, key)
    if records is None:
        return
    from .blobs import Blobs

    blobs = Blobs(store)
    for blob, file in written.items():
        info = blob_stat(blobs, blob)
        if info is not None and (info.st_dev, info.st_ino, info.st_size) == file:
            records.record(blob, info)
