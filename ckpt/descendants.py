"""Nothing left behind: adopting the replay's orphans, and ending every descendant."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import psutil

# Leaving no descendant behind: SIGTERM for a few rounds within a grace period,
# then SIGKILL rounds until none is left.
CLEANUP_GRACE_SECONDS = 2.0
TERM_ROUNDS = 5
KILL_ROUNDS = 20
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Adopt the child's orphans (Linux), so none can outlive us unnoticed."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _has_children() -> bool:
    """Whether any process is our child (Linux /proc; elsewhere assume yes)."""
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as children:
                if children.read().strip():
                    return True
    except OSError:
        return True
    return False


def kill_descendants() -> None:
    """Leave no descendant behind: SIGTERM, then SIGKILL, until none remains.

    One snapshot is not enough: a process can start another in its SIGTERM
    handler, one no snapshot held. Each such newcomer is ours to find in the next
    round (as subreaper we adopt every orphan), so we repeat: SIGTERM to each new
    process for a few rounds within the grace period, then SIGKILL, which no
    handler can answer, until no descendant is left (bounded, for one that cannot
    die: stuck in the kernel, or owned by another user).
    """
    if not _has_children():
        return  # nothing to clean up: spare the import of psutil
    import time

    deadline = time.monotonic() + CLEANUP_GRACE_SECONDS
    warned: set[psutil.Process] = set()
    for _ in range(TERM_ROUNDS):
        remaining = _living_descendants()
        if not remaining:
            return
        fresh = [process for process in remaining if process not in warned]
        _signal_each(fresh, kill=False)
        warned.update(fresh)
        if not _wait_gone(remaining, deadline):
            break  # some outlived the grace period: no more asking
    for _ in range(KILL_ROUNDS):
        remaining = _living_descendants()
        if not remaining:
            return
        _signal_each(remaining, kill=True)
        _wait_gone(remaining, time.monotonic() + 1.0)


def _living_descendants() -> list[psutil.Process]:
    """Our descendants that have not ended (the ended ones that are ours, reaped)."""
    import psutil

    try:
        descendants = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    return [process for process in descendants if not _ended(process)]


def _ended(process: psutil.Process) -> bool:
    """Whether `process` is gone or a zombie; a zombie of ours is reaped on the way."""
    import psutil

    try:
        if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # cannot tell: signalling it says more
    try:
        os.waitpid(process.pid, os.WNOHANG)  # an orphan we adopted: reap it
    except ChildProcessError:
        pass  # another's child: its parent reaps it
    return True


def _signal_each(processes: list[psutil.Process], kill: bool) -> None:
    import psutil

    for process in processes:
        try:
            if kill:
                process.kill()
            else:
                process.terminate()
        except psutil.Error:
            pass


def _wait_gone(processes: list[psutil.Process], deadline: float) -> bool:
    """Wait until all of `processes` have ended or `deadline` passes; whether they ended."""
    import time

    delay = 0.002
    while True:
        processes = [process for process in processes if not _ended(process)]
        if not processes:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
