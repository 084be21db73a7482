"""The directory that holds checkpoints: where it is, how files are named and replaced."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from stat import S_ISREG

# imported with the store, not on the first save: an import in the saving thread is a
# module lock a fork in another thread could leave held (see guest._SAVING_NEEDS)
from .backend import HOST, LocalBackend, is_url, open_backend, temporary_name
from .backend import TEMP_PREFIX as TEMP_PREFIX
from .backend import discard as discard
from .blobs import Blobs
from .errors import CkptError, CorruptCheckpointError, NotFoundError
from .fileformat import blob_refs, held_blobs, read_summary, write_stream
from .header import Summary
from .keys import load_key

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any, Protocol

    from .backend import Backend
    from .mirror import Mirror
    from .streamed import StreamedBuffer

    class RecordLike(Protocol):
        """A pickled value: its in-band bytes and its out-of-band buffers."""

        @property
        def inband(self) -> bytes:
            """The pickle, with large buffers left out."""

        @property
        def buffers(self) -> Sequence[Any]:
            """The large buffers, written raw."""

CALL_SUFFIX = ".call"
ERROR_SUFFIX = ".error"
MIN_ID_PREFIX = 4
_HOST = HOST  # what a temporary's name says of its writer's host (tests craft them)



def name_key(name: str) -> str:
    """A file-name-safe key for a checkpoint name; distinct names never share one.

    128 bits of SHA-256: retention deletes by key, so two names sharing one would
    prune each other's checkpoints (32 bits, as format 2 used, collide in practice).
    """
    return _key(name, 32)


def legacy_name_key(name: str) -> str:
    """The key formats 1 and 2 filed a name under (32 bits), still found by name."""
    return _key(name, 8)


_keys: dict[tuple[str, int], str] = {}


def _key(name: str, digits: int) -> str:
    # Listing checks both keys of every checkpoint's signed name, and a store holds
    # few names: each is worked out once per process (~8 us each: a regex and a hash).
    found = _keys.get((name, digits))
    if found is None:
        if len(_keys) > 4096:
            _keys.clear()
        found = _keys[name, digits] = _make_key(name, digits)
    return found


def _make_key(name: str, digits: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60].strip(".") or "_"
    import hashlib

    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{slug}-{digest[:digits]}"


def new_id() -> str:
    """A short random id (48 bits: collisions are negligible at any store size)."""
    return os.urandom(6).hex()


class Entry:
    """One checkpoint in the store, as listing sees it (nothing unpickled).

    `summary` and `error_summary` come only from headers that verified; a
    checkpoint that did not has `problem` set, says nothing of its contents,
    and is `dead` when it can never be read (so `cdip gc` may remove it).
    """

    def __init__(self, checkpoint_id: str, key: str, stamp: int, call_path: str,
                 error_path: str | None, summary: Summary | None,
                 error_summary: Summary | None, problem: str | None = None,
                 dead: bool = False) -> None:
        self.id = checkpoint_id
        self.key = key
        self.stamp = stamp
        self.call_path = call_path
        self.error_path = error_path
        self.summary = summary
        self.error_summary = error_summary
        self.problem = problem
        self.dead = dead
        self._size: int | None = None
        # what measures its parts (the store that read it)
        self.backend: Store | LocalBackend | None = None
        # (id, length) of each blob its parts hold, from their verified summaries
        self.blobs: list[tuple[str, int]] = []

    def __repr__(self) -> str:
        return f"<Entry {self.id} {self.name!r} {self.trigger}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and self._identity() == other._identity()

    def _identity(self) -> tuple[Any, ...]:
        return (self.id, self.key, self.stamp, self.call_path, self.error_path, self.summary,
                self.error_summary, self.problem)

    __hash__ = None  # type: ignore[assignment]

    @property
    def name(self) -> str:
        """The name it is filed under (for a broken file: its file name's key)."""
        return self.summary.name if self.summary is not None else self.key

    @property
    def function(self) -> str:
        """``module:qualname``, or '?' for a broken file."""
        return self.summary.function if self.summary is not None else "?"

    @property
    def trigger(self) -> str:
        """`error` once the call raised and was saved, else what it was saved by."""
        if self.error_path is not None:
            return "error"
        return self.summary.trigger if self.summary is not None else "call"

    @property
    def created(self) -> float:
        """Seconds since the epoch when the call was made."""
        return self.stamp / 1e9

    @property
    def paths(self) -> list[str]:
        """Every file of this checkpoint."""
        return [self.call_path] + ([self.error_path] if self.error_path else [])

    @property
    def size(self) -> int:
        """Bytes on disk, its blobs included (measured once: listing shows it twice).

        A blob other checkpoints hold too counts here in full: it is what this
        one needs. The store counts each blob once (`retention.store_size`).
        """
        if self._size is None:
            self._size = sum(dict(self.blobs).values())
            for path in self.paths:
                self._size += self._part_size(path)
        return self._size

    def _part_size(self, path: str) -> int:
        if self.backend is None:
            try:
                return os.lstat(path).st_size
            except OSError:
                return 0
        name = os.path.basename(path)
        if isinstance(self.backend, LocalBackend):
            info = self.backend.stat(name)
            return info.size if info is not None else 0
        return self.backend.part_size(name) or 0


# <name key>~<time in ns>~<id>.call|.error; one match per file: the store can hold 10,000
# (a stamp of at most 20 digits, as written: a longer one could not be shown as a date)
_PART_NAME = re.compile(r"([^~]+)~([0-9]{1,20})~([^~.]+)(\.call|\.error)")


class Store:
    """A directory of checkpoints.

    Paths are plain strings here: pathlib costs every `cdip` command and every
    replay several milliseconds to import.
    """

    def __init__(self, path: str | os.PathLike[str], trust: bool = False) -> None:
        self.path = os.fspath(path)
        # With `trust` (cdip run --trust) headers are read without verifying them.
        self._trust = trust
        # every file operation goes through it (a local directory or a URL: `ckpt.backend`)
        self.remote = is_url(self.path)
        self.backend = _remote(self.path) if self.remote else LocalBackend(self.path)
        self._mirror: Mirror | None = None
        self._listed: dict[str, int] = {}  # part sizes as of the last listing (see part_size)
        self._blob_sizes: dict[str, int] | None = None  # its blobs', once per command
        self._key: bytes | None = None
        self._blobs: Blobs | None = None
        # what `path_of` puts before a file name: os.path.join's result, joined once
        self._prefix = os.path.join(self.path, "")
        self._key_problem: str | None = None
        # Blob ids this store object computed, by id() of the buffer (kept alive): an
        # argument that is also a local is hashed once for the call and the error part.
        self._known: dict[int, tuple[Any, str]] = {}
        # The blobs each staged part holds, with their bytes, until it is published
        self._claims: dict[str, dict[str, memoryview | StreamedBuffer]] = {}
        # Each staged part's fstat once written, and the blobs it names, until published
        self._signed: dict[str, tuple[os.stat_result, tuple[str, ...]]] = {}

    @property
    def blobs(self) -> Blobs:
        """The store's content-addressed buffers."""
        if self._blobs is None:  # made once: a save asks for it several times
            self._blobs = Blobs(self.path, self._temporary_name, self.backend)
        return self._blobs

    @property
    def mirror(self) -> Mirror:
        """A remote store's local copy (heads for listing, checkpoints to replay)."""
        if self._mirror is None:
            from .mirror import Mirror

            self._mirror = Mirror(self.path)
        return self._mirror

    def readable(self, filename: str) -> str:
        """A local file to read part `filename`'s summary from (remote: its kept head)."""
        if not self.remote:
            return self.path_of(filename)
        return self.mirror.head(self.backend, filename)

    def prefetch(self, filenames: list[str]) -> None:
        """Remote: fetch the heads of these parts at once (concurrently), before `readable`."""
        if self.remote and filenames:
            self.mirror.fetch_heads(self.backend, filenames)

    def local(self, entry: Entry) -> tuple[Store, Entry]:
        """A store and entry whose files are local: itself, or a remote one's copy.

        A remote checkpoint is copied into the local copy of its store (blobs
        fetched once, then reused; see `ckpt.mirror`), and read back verified.
        """
        if not self.remote:
            return self, entry
        from .mirror import copy_checkpoint, trim

        local = self.mirror.local_store(self._trust)
        copied, _ = copy_checkpoint(self, entry, local)
        trim(local, keep=[blob for blob, _ in entry.blobs])
        return local, copied

    def reading_key(self) -> bytes | None:
        """The key headers are verified under (None with `trust`).

        Raises:
            CkptError: this user has no key, or an unsafe one.
        """
        if self._trust:
            return None
        if self._key is None:
            self._key = load_key(create=False)
        return self._key

    def path_of(self, filename: str) -> str:
        """The path of a file of the store."""
        if filename.startswith(os.sep):
            return filename  # as os.path.join would have it
        return self._prefix + filename

    def filename(self, key: str, stamp: int, checkpoint_id: str, suffix: str) -> str:
        """The final path of one part of a checkpoint."""
        return self.path_of(f"{key}~{stamp:020d}~{checkpoint_id}{suffix}")

    def listdir(self) -> list[str]:
        """The store's object names, temporaries left out ([] while it does not exist).

        Remote: one LIST request per 1,000 objects, which gives their sizes too.
        """
        if not self.remote:
            self._listed = {}
            return self.backend.names()
        self._listed = {info.name: info.size for info in self.backend.objects()}
        return list(self._listed)

    def part_size(self, filename: str) -> int | None:
        """A part's size in bytes (None when it is not there, or is not a file).

        As of this store's last listing: `cdip info` measures each part once for the
        store's total and shows it again with its checkpoint (each stat ~10 us).
        """
        if filename in self._listed:
            return self._listed[filename]
        if self.remote or "/" in filename or filename in ("", ".", ".."):
            info = self.backend.stat(filename)
            return info.size if info is not None else None
        try:  # a part's name: one lstat, as `LocalBackend.stat` does it (no link followed)
            found = os.lstat(self._prefix + filename)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not S_ISREG(found.st_mode):
            return None
        self._listed[filename] = found.st_size  # forgotten at the next listing
        return found.st_size

    def scan(self, names: list[str] | None = None) -> Iterator[tuple[str, int, str, str, str]]:
        """(name key, stamp, id, suffix, file name) of every part (among `names`).

        Every save runs this: only file names are looked at. Callers narrow
        `names` with a plain string test first where they can: parsing each of
        10,000 names costs tens of milliseconds.
        """
        match = _PART_NAME.fullmatch
        for filename in self.listdir() if names is None else names:
            parsed = match(filename)
            if parsed is not None:
                key, stamp, checkpoint_id, suffix = parsed.groups()
                yield key, int(stamp), checkpoint_id, suffix, filename

    def named(self, key: str, names: list[str] | None = None) -> list[str]:
        """The file names (of `names`, else the store's) filed under name key `key`."""
        prefix = key + "~"
        return [name for name in (self.listdir() if names is None else names)
                if name.startswith(prefix)]

    def _index(self, names: list[str] | None = None,
               ) -> tuple[dict[str, list[tuple[str, int, str]]], dict[str, str]]:
        """Call parts by id (key, stamp, file name), and error parts by file stem.

        From file names only. An id normally has one call part; a file planted with
        the same id under another name must not hide the real one, so every
        candidate is kept, and each error part goes with the call part of its stem.
        """
        calls: dict[str, list[tuple[str, int, str]]] = {}
        errors: dict[str, str] = {}
        for entry_key, stamp, checkpoint_id, suffix, filename in self.scan(names):
            if suffix == CALL_SUFFIX:
                calls.setdefault(checkpoint_id, []).append((entry_key, stamp, filename))
            else:
                errors[filename[: -len(ERROR_SUFFIX)]] = filename
        return calls, errors

    def _read(self, ids: Iterable[str], calls: dict[str, list[tuple[str, int, str]]],
              errors: dict[str, str]) -> list[Entry]:
        found = []
        ids = list(ids)
        if self.remote:  # every head wanted, fetched at once (a local listing lists nothing)
            self.prefetch([
                name for checkpoint_id in ids for _, _, filename in calls[checkpoint_id]
                for name in (filename, errors.get(filename[: -len(CALL_SUFFIX)]))
                if name is not None])
        for checkpoint_id in ids:
            entry = self._read_candidates(checkpoint_id, calls[checkpoint_id], errors)
            if entry is not None:
                found.append(entry)
        found.sort(key=lambda entry: (entry.stamp, entry.id))
        return found

    def _read_candidates(self, checkpoint_id: str, candidates: list[tuple[str, int, str]],
                         errors: dict[str, str]) -> Entry | None:
        """The entry of an id: the call part that verifies, if several claim the id."""
        first = None
        for entry_key, stamp, filename in candidates:
            error = errors.get(filename[: -len(CALL_SUFFIX)])
            entry = self._read_entry(checkpoint_id, entry_key, stamp, self.path_of(filename),
                                     self.path_of(error) if error is not None else None)
            if entry is not None:
                entry.backend = self
            if entry is not None and not entry.problem:
                return entry
            first = first or entry
        return first

    def entries(self, key: str | None = None) -> list[Entry]:
        """Every checkpoint (optionally of one name key), oldest first."""
        calls, errors = self._index(self.named(key) if key is not None else None)
        return self._read(calls, calls, errors)

    def find(self, name_or_id: str | None) -> Entry:
        """The checkpoint an id, an id prefix or a name (its newest) designates.

        Raises:
            NotFoundError: nothing matches, or an id prefix is ambiguous.
        """
        names = self.listdir()
        if name_or_id is not None:
            check_name(name_or_id)
            found = self._find_by_id_or_name(name_or_id, names)
            if found is not None:
                return found
        calls, errors = self._index(names)
        if not calls:
            raise NotFoundError(
                f"no checkpoints in {self.path}",
                hint="decorate a function with @ckpt.ckpt and run your program",
            )
        if name_or_id is None:  # the newest that can be read, else the newest
            ordered = sorted(calls, key=lambda i: (_newest(calls[i]), i), reverse=True)
            first = None
            for checkpoint_id in ordered:
                for entry in self._read([checkpoint_id], calls, errors):
                    if not entry.problem:
                        return entry
                    first = first or entry
            if first is not None:
                return first
            raise NotFoundError(f"no checkpoints in {self.path}")
        # a trailing part of a name: `fit` for `ModelStep.fit`, `test_y[2]` or
        # `TestY::test_y` for `tests/x.py::TestY::test_y[2]` (see ckpt.names)
        from . import names as naming

        listed = self._read(calls, calls, errors)
        named = [e for e in listed if name_or_id in _short_names(e.name)]
        if named:
            return naming.pick(name_or_id, named)
        if len(name_or_id) >= MIN_ID_PREFIX:
            prefixed = [i for i in calls if i.startswith(name_or_id)]
            if len(prefixed) == 1:
                return self._read(prefixed, calls, errors)[0]
            if len(prefixed) > 1:
                raise NotFoundError(
                    f"{name_or_id!r} is the start of {len(prefixed)} checkpoint ids",
                    hint="give more characters of the id",
                )
        suggestion = naming.did_you_mean(name_or_id, [e.name for e in listed if not e.problem])
        raise NotFoundError(
            f"no checkpoint named {name_or_id!r} in {self.path}",
            hint=f"{suggestion + ' ' if suggestion else ''}`cdip info` lists the names and ids "
                 "there are",
        )

    def _find_by_id_or_name(self, name_or_id: str, names: list[str]) -> Entry | None:
        """An exact id, else a name's newest; only the files that can match are parsed.

        File names give the candidates and their order (time): usually only the
        newest one's header is read, however many checkpoints the name has.
        """
        needle = f"~{name_or_id}."
        calls, errors = self._index([filename for filename in names if needle in filename])
        if name_or_id in calls:
            return next(iter(self._read([name_or_id], calls, errors)), None)
        keys = (name_key(name_or_id), legacy_name_key(name_or_id))
        calls, errors = self._index([n for key in keys for n in self.named(key, names)])
        for checkpoint_id in sorted(calls, key=lambda i: (_newest(calls[i]), i), reverse=True):
            for entry in self._read([checkpoint_id], calls, errors):
                if entry.name == name_or_id:  # not a key shared by another name
                    return entry
        return None

    def _read_entry(self, checkpoint_id: str, key: str, stamp: int, call_path: str,
                    error_path: str | None) -> Entry | None:
        """Read and verify both summaries; None when the checkpoint was deleted meanwhile."""
        entry = Entry(checkpoint_id, key, stamp, call_path, error_path, None, None)
        try:
            verifying = self.reading_key()
            entry.summary, entry.blobs = _summary(self._readable_path(call_path), verifying)
            if error_path is not None:
                entry.error_summary, error_blobs = _summary(self._readable_path(error_path),
                                                            verifying)
                entry.blobs += error_blobs
            _check_entry(entry)
            self._check_blobs(entry)
        except FileNotFoundError:
            if entry.summary is None:
                return None
            entry.error_path = None  # the error part went meanwhile: judge the call part alone
            return self._read_entry(checkpoint_id, key, stamp, call_path, None)
        except OSError as exc:
            entry.problem = f"unreadable: {exc.strerror}"
        except CorruptCheckpointError as exc:
            entry.problem, entry.dead = exc.reason, exc.dead
        except CkptError as exc:  # no key, or an unsafe one
            entry.problem = f"cannot be verified: {exc.message}"
        if entry.problem:
            entry.summary = entry.error_summary = None  # nothing from a file that did not verify
            entry.blobs = []
        return entry

    def _readable_path(self, path: str) -> str:
        return self.readable(os.path.basename(path)) if self.remote else path

    def _check_blobs(self, entry: Entry) -> None:
        """Every blob the checkpoint holds must be there, of its size.

        Its bytes are checked against its id whenever it is read. Remote: every
        blob's size from one listing (a LIST request per 1,000), not a HEAD each.
        """
        blobs = self.blobs if entry.blobs else None
        for blob, length in entry.blobs:
            assert blobs is not None
            if self.remote:
                if self._blob_sizes is None:
                    self._blob_sizes = blobs.sizes()
                size = self._blob_sizes.get(blob)
            else:
                size = blobs.size(blob)
            if size != length:
                what = "is missing" if size is None else "was altered or replaced (its size)"
                raise CorruptCheckpointError(
                    f"checkpoint {entry.id}: a stored buffer {what}",
                    reason=f"a stored buffer {what} ({blob[:16]})")

    _temporary_name = staticmethod(temporary_name)

    def open_temporary(self) -> tuple[str, IO[bytes]]:
        """A new private temporary file in the store, for an atomic write.

        Remote: in the store's local copy; `publish` uploads it (a part is small:
        its large buffers went to the blobs already).
        """
        local = self.backend if isinstance(self.backend, LocalBackend) else LocalBackend(
            os.path.join(self.mirror.path, "staging"))
        return local.open_temporary()

    def write_part(
        self, final: str, summary: dict[str, Any], detail: dict[str, Any],
        records: Iterable[RecordLike],
    ) -> tuple[bytes, int]:
        """Write a signed part atomically: to a private temporary, then renamed to `final`.

        Returns its tag and its size in bytes.
        """
        temporary, tag, size = self.stage_part(summary, detail, records)
        self.publish(temporary, final)
        return tag, size

    def stage_part(
        self, summary: dict[str, Any], detail: dict[str, Any], records: Iterable[RecordLike],
    ) -> tuple[str, bytes, int]:
        """Write a signed part to a private temporary; return it, its tag and its size.

        Nothing lists it until `publish` renames it into place (`cdip gc` removes
        it once its writer is gone). Its large buffers are put into the store's
        blobs now (once per store: one that is there already is only claimed);
        the size returned counts the blobs this part added.
        """
        fsync = os.environ.get("PYCKPT_FSYNC") == "1"
        key = load_key()
        if self._key is None and not self._trust:
            self._key = key  # as `reading_key` would load it: the save's prune asks for it
        temporary, stream = self.open_temporary()
        try:
            with stream:
                tag, size, plan = write_stream(stream, key, summary, detail, records,
                                               self.blobs, self._known, fsync)
                stream.flush()
                if fsync:
                    os.fsync(stream.fileno())
                # what it is once written: `publish` tells retention it verifies (see
                # `retention.signed_here`), so the next save's prune does not read it back
                written = os.fstat(stream.fileno())
        except BaseException:
            held = held_blobs(temporary)
            discard(temporary)
            if held:  # the blobs it put, unless another part holds them
                from .retention import release_blobs

                release_blobs(self, held)
            raise
        if plan is not None and plan.views:
            self._claims[temporary] = plan.views
        self._signed[temporary] = (written, tuple(plan.views) if plan is not None else ())
        return temporary, tag, size

    def publish(self, temporary: str, final: str) -> None:
        """Rename a staged part into place (atomically); on failure it is removed."""
        try:
            if isinstance(self.backend, LocalBackend):
                self.backend.publish_temporary(temporary, self._name_of(final))
            else:  # the signed part last: a reader never sees it before its blobs
                with open(temporary, "rb") as stream:
                    self.backend.put(self._name_of(final), stream)
                discard(temporary)
        except BaseException:
            self._claims.pop(temporary, None)
            self._signed.pop(temporary, None)
            discard(temporary)
            raise
        signed = self._signed.pop(temporary, None)
        if signed is not None and isinstance(self.backend, LocalBackend):
            from .retention import signed_here

            signed_here(final, *signed)
        self.settle(temporary)

    def settle(self, temporary: str) -> None:
        """Once a staged part is in place: put back any of its blobs removed meanwhile.

        A `cdip gc` that listed the store before the part was published may have
        removed a blob it reuses; after the rename every remover sees the part
        (see `Blobs.remove`), so one check now closes the race.
        """
        views = self._claims.pop(temporary, {})
        blobs = self.blobs
        for blob, view in views.items():
            if not blobs.claim(blob, view.nbytes):
                blobs.put(blob, view)

    def _name_of(self, path: str) -> str:
        """The object name of a path `path_of` made (a part: a file at the top)."""
        folder, name = os.path.split(path)
        if folder != self.path.rstrip(os.sep) and os.path.normpath(folder) != os.path.normpath(
                self.path):
            raise ValueError(f"{path} is not in the store {self.path}")
        return name

    def forget(self, temporary: str) -> None:
        """A staged part will not be published: let go of its buffers."""
        self._claims.pop(temporary, None)
        self._signed.pop(temporary, None)

    def remove(self, entry: Entry) -> None:
        """Delete a checkpoint; one removed meanwhile by someone else is fine."""
        self.remove_all([entry])

    def remove_all(self, entries: Iterable[Entry]) -> None:
        """Delete checkpoints, then the blobs they held that no other part holds."""
        from .retention import release_blobs

        held: set[str] = set()
        for entry in entries:
            held.update(blob for blob, _ in entry.blobs)
            for path in entry.paths:
                self.backend.delete(self._name_of(path))
            if self.remote:
                self.mirror.forget(os.path.basename(path) for path in entry.paths)
        if held:
            release_blobs(self, held)

# A URL's backend, per process: its client (connections, credentials) is made once, not
# at every save. Per pid: fsspec's event loop and connections do not survive a fork.
_REMOTES: dict[tuple[int, str], Backend] = {}


def _remote(url: str) -> Backend:
    key = (os.getpid(), url)
    backend = _REMOTES.get(key)
    if backend is None:
        backend = _REMOTES[key] = open_backend(url)
    return backend


def _short_names(name: str) -> set[str]:
    from .names import short_names

    return short_names(name)


def check_name(name_or_id: str) -> None:
    """Refuse a name or id that looks like a path out of the store.

    Names never become paths (they are hashed), but `../x` or `/etc/x` given on
    the command line is a mistake worth saying so about.
    """
    parts = name_or_id.replace("\\", "/").split("/")
    if "\0" in name_or_id or name_or_id.startswith("/") or ".." in parts or not name_or_id:
        raise CkptError(
            f"{name_or_id!r} is not a checkpoint name or id",
            hint="names and ids address checkpoints inside the store only; see `cdip info`",
        )


def _newest(candidates: list[tuple[str, int, str]]) -> int:
    return max(stamp for _, stamp, _ in candidates)


def _summary(path: str, key: bytes | None) -> tuple[Summary, list[tuple[str, int]]]:
    raw = read_summary(path, key)
    return Summary.from_json(raw), blob_refs(raw)


def _check_entry(entry: Entry) -> None:
    """Listing's checks of the verified summaries: their names, and a save not interrupted."""
    summary = entry.summary
    assert summary is not None
    check_signed_names(entry, summary, entry.error_summary)
    if summary.trigger == "error" and entry.error_path is None:
        raise CorruptCheckpointError(
            f"checkpoint {entry.id} was interrupted while it was saved",
            reason="interrupted: saved on error, but its error part is missing")


def check_signed_names(entry: Entry, call: Summary, error: Summary | None) -> None:
    """The verified summaries must name the files they are in: nothing renamed or swapped.

    Raises:
        CorruptCheckpointError: a signed id, name, time or part differs from the file's.
    """
    for part, suffix in ((call, "call"), (error, "error")):
        if part is None:
            continue
        keys = (name_key(part.name), legacy_name_key(part.name))
        if part.id != entry.id or entry.key not in keys or part.part != suffix or (
                part.stamp is not None and part.stamp != entry.stamp):
            raise CorruptCheckpointError(
                f"checkpoint {entry.id}: its file was renamed or swapped",
                hint="a checkpoint's id, name and time are signed with it; rename nothing "
                     "in the store",
                reason="renamed or swapped (its signed id, name or time differ from its "
                       "file name)")

