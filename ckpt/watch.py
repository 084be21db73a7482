"""`cdip run --watch`: replay again, in a fresh child, each time a source of the replay changes."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from .errors import EXIT_OK, CkptError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType
    from typing import Any

    from watchfiles import Change

    from .handback import Handback
    from .store import Entry
    from .supervise import Supervisor

WATCHED_MODES = ("run", "until-error")
EXIT_INTERRUPTED = 128 + signal.SIGINT
# How long watchfiles waits for the first event before telling us it is watching (ms).
READY_MS = 100


def watched_mode(mode: str | None, watch: bool) -> str:
    """The mode `--watch` replays in (default `run`); refuse what it cannot do.

    Raises:
        CkptError: --until-pass without --watch, a mode other than run or
            until-error, or watchfiles not installed.
    """
    if not watch:
        raise CkptError("--until-pass goes with --watch", hint="cdip run NAME --watch --until-pass")
    mode = mode or "run"
    if mode not in WATCHED_MODES:
        raise CkptError(f"--watch replays in --mode run or until-error, not {mode}")
    try:
        import watchfiles  # noqa: F401  (imported for --watch only)
    except ImportError as exc:
        raise CkptError("--watch needs watchfiles, which is not installed",
                        hint=f"{sys.executable} -m pip install 'ckpt[loop]'") from exc
    return mode


class Sources:
    """What the replays read: the files they imported and their projects' .py files.

    A change to one of these starts a new round; it is also the filter handed to
    watchfiles. A project as wide as the home directory (or `/`) is not watched
    whole: only the files imported from it.
    """

    def __init__(self, fallback: str) -> None:
        from watchfiles import DefaultFilter

        self.files: set[str] = set()
        self.projects: set[str] = set()
        self._fallback = fallback
        self._ignored = DefaultFilter()  # .git, .venv, __pycache__, editors' swap files

    def add(self, back: Handback) -> None:
        """Watch what one more round imported, and its project."""
        self.files.update(back.files)
        if back.project and not _too_wide(back.project):
            self.projects.add(back.project)

    def roots(self) -> list[str]:
        """The paths to watch: the projects, the directories of files outside them."""
        if not self.files and not self.projects and not _too_wide(self._fallback):
            self.projects.add(self._fallback)  # the child told us nothing: where we are
        roots = set(self.projects)
        for file in self.files:
            if not self._in_project(file):
                folder = os.path.dirname(file)
                roots.add(file if _too_wide(folder) else folder)
        return sorted(root for root in roots if os.path.exists(root))  # not one deleted since

    def changed_since(self, start: float) -> str | None:
        """An imported file changed after `start` (while the round ran), if any."""
        for file in sorted(self.files):
            try:
                if os.stat(file).st_mtime > start:
                    return file
            except OSError:
                return file  # deleted, or replaced by an editor mid-save
        return None

    def __call__(self, change: Change, path: str) -> bool:
        """Whether a change to `path` starts a round (watchfiles' filter)."""
        if path in self.files:
            return True
        return path.endswith(".py") and self._in_project(path) and self._ignored(change, path)

    def _in_project(self, path: str) -> bool:
        return any(path.startswith(os.path.join(project, "")) for project in self.projects)


def _too_wide(directory: str) -> bool:
    """Whether `directory` is the home directory, one above it, or `/`."""
    home = os.path.join(os.path.expanduser("~"), "")
    return home.startswith(os.path.join(directory, ""))


def check_frame(entry: Entry, frame: int, mode: str) -> None:
    """`--frame N` checked before the first round: no edit can add a frame that was not saved.

    Nor make a lambda (or a comprehension) a function to call again. (The replay checks
    both too, but under --watch every round would fail alike, for ever.)
    """
    from .fileformat import read_headers
    from .header import NOT_FUNCTIONS, ErrorDetail
    from .keys import load_key

    if entry.problem:  # --trust: the replay's own check says it
        return
    frames = []
    if entry.error_path is not None:
        detail = read_headers(entry.error_path, load_key(create=False))[1]
        frames = list(ErrorDetail.from_json(detail).frames)
    count = len(frames)
    if not -count <= frame < count:
        raise CkptError(f"--frame {frame}: checkpoint {entry.id} holds {count} saved "
                        f"frame{'' if count == 1 else 's'}",
                        hint="`cdip info NAME --json` lists them; -1 is the innermost")
    what = NOT_FUNCTIONS.get(frames[frame].function)
    # a count from the innermost goes out to the function around it (the replay says so)
    if what is not None and frame >= 0 and mode != "locals":
        raise CkptError(f"--frame {frame}: frame {frame}, {frames[frame].qualname}, is {what}, "
                        "which cannot be re-called",
                        hint="choose the frame of the function around it (`cdip info NAME "
                             "--json` lists them)")


def watch(supervisor: Supervisor, options: dict[str, Any], until_pass: bool) -> int:
    """Replay, then again after each change, until Ctrl-C (or the first pass, `until_pass`).

    Each round prints one line: pass or fail, with the outcome. In `run` mode a
    Ctrl-C during a round ends the watch too; in until-error it is the debugger's.
    """
    import time

    sources = Sources(options.get("cwd") or os.getcwd())
    interrupt_ends = options["mode"] == "run"
    round_number = 0
    while True:
        round_number += 1
        started = time.time()
        back = supervisor.replay(options, interrupt_ends)
        print(_round_line(round_number, back), file=sys.stderr, flush=True)
        if supervisor.signalled:
            return 128 + supervisor.signalled
        if interrupt_ends and (supervisor.interrupted or back.status == EXIT_INTERRUPTED):
            return EXIT_INTERRUPTED
        if until_pass and back.status == EXIT_OK:
            return EXIT_OK
        sources.add(back)
        supervisor.ready()  # the next child boots while we wait
        changed = _wait_for_change(sources, started, supervisor)
        if changed is None:
            return 128 + (supervisor.signalled or signal.SIGINT)
        print(f"cdip: {_shown(changed)} changed: replaying again", file=sys.stderr, flush=True)


def _round_line(number: int, back: Handback) -> str:
    from .display import printable

    verdict = "pass" if back.status == EXIT_OK else "fail"
    outcome = back.line.splitlines()[0] if back.line else f"exit status {back.status}"
    return printable(f"cdip: --watch round {number}: {verdict}: {outcome}")


def _wait_for_change(sources: Sources, started: float, supervisor: Supervisor) -> str | None:
    """The first changed file (a burst of saves is one change); None on Ctrl-C or SIGTERM."""
    roots = sources.roots()
    if not roots:
        raise CkptError("--watch found nothing to watch: the replay reported no source files")
    with _stopped_by_signals(supervisor):
        try:
            for changes in _changes(roots, sources):
                if changes:
                    return min(path for _, path in changes)
                if started:  # the first timeout: watching now; a save during the round?
                    stale = sources.changed_since(started)
                    if stale is not None:
                        return stale
                    started = 0.0
                    print(f"cdip: watching {_watched(sources)} (Ctrl-C to stop)",
                          file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            return None
    return None


def _changes(roots: list[str], sources: Sources) -> Iterator[set[tuple[Change, str]]]:
    """The batches of changes watchfiles sees (an empty one after each READY_MS without).

    Where the system's watches run out (inotify's limits, ENOSPC), it polls instead.
    """
    import watchfiles

    try:
        yield from watchfiles.watch(*roots, watch_filter=sources, rust_timeout=READY_MS,
                                    yield_on_timeout=True)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        print(f"cdip: cannot watch the files ({exc}): checking them every 300 ms instead",
              file=sys.stderr, flush=True)
        yield from watchfiles.watch(*roots, watch_filter=sources, rust_timeout=READY_MS,
                                    yield_on_timeout=True, force_polling=True)


@contextlib.contextmanager
def _stopped_by_signals(supervisor: Supervisor) -> Iterator[None]:
    """SIGTERM and SIGHUP end the wait as Ctrl-C does, noted on the supervisor."""

    def stop(signum: int, _frame: FrameType | None) -> None:
        supervisor.signalled = signum
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _watched(sources: Sources) -> str:
    from .display import printable

    files = len(sources.files)
    what = [f"{files} imported file{'' if files == 1 else 's'}"]
    what += [f".py files under {_shown(project)}" for project in sorted(sources.projects)]
    return printable(", ".join(what))


def _shown(path: str) -> str:
    """`path`, relative to the current directory when it is under it."""
    from .display import printable

    here = os.getcwd()
    if path == here:
        return "."
    inside = path.startswith(os.path.join(here, ""))
    return printable(path[len(here) + 1:] if inside else path)
