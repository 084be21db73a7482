"""Running the replay child: the terminal handed over, signals managed, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType

GRACE_SECONDS = 5.0
_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
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


def _kill_descendants() -> None:
    if not _has_children():
        return  # nothing to clean up: spare the import of psutil
    import psutil

    try:
        descendants = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for process in descendants:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(descendants, timeout=2)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=2)


def exit_status(returncode: int) -> int:
    """The child's status, or 128+N when signal N killed it (as a shell reports it)."""
    return 128 - returncode if returncode < 0 else returncode


def supervise(command: Sequence[str], env: dict[str, str], cwd: str | None = None) -> int:
    """Run `command` on our terminal and return its exit status.

    Ctrl-C belongs to the child (a debugger uses it), so we ignore SIGINT while
    it runs; SIGTERM and SIGHUP are passed on, then SIGKILL after a grace period.
    """
    _become_subreaper()
    child = subprocess.Popen(list(command), env=env, cwd=cwd)

    def escalate() -> None:
        if child.poll() is None:
            child.kill()

    def forward(signum: int, _frame: FrameType | None) -> None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            return
        timer = threading.Timer(GRACE_SECONDS, escalate)
        timer.daemon = True
        timer.start()

    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous[signum] = signal.signal(signum, forward)
    try:
        return exit_status(child.wait())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _kill_descendants()


def runner_importable(python: str) -> bool:
    """Whether `python` can start our replay child (ckpt installed there)."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return True
    probe = subprocess.run([python, "-c", "import _ckpt_runner, ckpt"],
                           capture_output=True, timeout=60, check=False)
    return probe.returncode == 0
