"""Running the replay child: the terminal handed over, signals managed, nothing left behind."""

from __future__ import annotations

import os
import signal
import sys

from .descendants import become_subreaper, kill_descendants
from .drift import is_this_interpreter as is_this_interpreter  # (the replay child asks too)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType
    from typing import Any

    from .handback import Handback

GRACE_SECONDS = 5.0
# How the replay child knows its supervisor (runner/__main__.py reads it, by this name).
PARENT_VARIABLE = "_CKPT_PARENT"
# `-c` rather than `-m _ckpt_runner`: runpy's imports would add to every replay's start.
# `-I` (isolated): neither the directory `cdip run` is typed in, nor PYTHONPATH, nor a
# user site can put a module (json.py, hmac.py, _ckpt_runner.py...) before ours and the
# standard library's: the child imports only its interpreter's own until the checkpoint
# verifies, and then the recorded `sys.path` is restored.
RUNNER = ("-I", "-c", "import sys; from _ckpt_runner.__main__ import main; sys.exit(main())")


def exit_status(returncode: int) -> int:
    """The child's status, or 128+N when signal N killed it (as a shell reports it)."""
    return 128 - returncode if returncode < 0 else returncode


def replay_env() -> dict[str, str]:
    """The replay child's environment: ours, with capture off, and who supervises it."""
    # Replaying must not file new checkpoints of its own. The child checks that its
    # parent is still us and dies with us (the runner takes the variable out again).
    return {**os.environ, "PYCKPT_DISABLE": "1", PARENT_VARIABLE: str(os.getpid())}


def _open_standard_streams() -> None:
    """Put /dev/null where standard input, output or error is closed (`cdip run <&-`).

    Else the first file or pipe we open takes the empty number, and the child
    would read its input from our pipe, or write its output into it.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:  # cannot be, as the lower numbers are open: but be sure
                os.dup2(null, fd)
                os.close(null)
            os.set_inheritable(fd, True)


class Child:
    """A process started with posix_spawn: the little of `Popen` supervising needs.

    Not `subprocess`: importing it would delay the start of every replay.
    """

    def __init__(self, command: Sequence[str], env: dict[str, str]) -> None:
        _open_standard_streams()
        self.pid = os.posix_spawn(command[0], list(command), env)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code if the child has ended, else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        """Wait for the child to end; its exit code (-N: killed by signal N)."""
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Signal the child unless it has already been reaped."""
        if self.returncode is None:
            os.kill(self.pid, signum)


class Standby:
    """A replay child started before `cdip` knows what it will replay.

    Starting an interpreter is most of a replay's wall time. Started first, the
    child boots and imports the replay machinery on one core while `cdip` parses
    its arguments and finds the checkpoint on the other; then it waits for its
    options on a pipe. Closing the pipe unused sends it away.
    """

    def __init__(self, env: dict[str, str]) -> None:
        _open_standard_streams()  # before the pipe could take the number of one
        read, self._pipe = os.pipe()
        os.set_inheritable(read, True)
        # Ignored across exec, SIGINT cannot kill the child mid-start with a traceback
        # of ours; it takes Ctrl-C back when it is told to go.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.child = Child([sys.executable, *RUNNER, "--standby", str(read)], env)
        finally:
            signal.signal(signal.SIGINT, previous)
            os.close(read)
        self._interrupts = previous is signal.default_int_handler

    def go(self, options: str) -> Child:
        """Hand the child its runner options (JSON); return it."""
        import json

        message = json.dumps({"options": options, "interrupts": self._interrupts})
        become_subreaper()  # before the child can start processes of its own
        try:
            with open(self._pipe, "w", closefd=True) as pipe:
                self._pipe = -1
                pipe.write(message)
        except BrokenPipeError:
            pass  # it died while waiting (killed?): supervising reports how
        return self.child

    def cancel(self) -> None:
        """Send the child away unused (it is killed: it ran no code of anyone's)."""
        if self._pipe < 0:
            return
        os.close(self._pipe)
        self._pipe = -1
        try:
            self.child.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass  # it ended on its own, and is reaped below
        try:
            self.child.wait()
        except ChildProcessError:
            pass  # reaped already


class Supervisor:
    """Replays on our terminal, one child at a time: start one, forward signals, wait, restart.

    `cdip run` drives it once, `--watch` once a round, and a debugger's `restart`
    again with the breakpoints its child handed back. The first child can be the
    Standby that `cdip` started ahead; `ready()` starts the next one ahead while
    nothing runs. `close()` (or leaving the `with` block) leaves no descendant behind.
    """

    def __init__(self, python: str, standby: Standby | None = None) -> None:
        self.python = python
        self.env = replay_env()
        self.interrupted = False  # Ctrl-C came while a child ran (see `wait`)
        self.signalled: int | None = None  # the SIGTERM or SIGHUP we were sent, passed on
        self._standby: Standby | None = None
        if standby is not None:
            if is_this_interpreter(python):
                self._standby = standby
            else:
                standby.cancel()  # another interpreter replays: send ours away first

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self, options: str) -> Child:
        """Start a replay child with the runner options `options` (JSON)."""
        become_subreaper()
        if self._standby is not None:
            standby, self._standby = self._standby, None
            return standby.go(options)
        return Child([self.python, *RUNNER, options], self.env)

    def wait(self, child: Child, interrupt_ends: bool = False) -> int:
        """Wait for `child` on our terminal; its exit status. Then no descendant is left.

        Ctrl-C belongs to the child (a debugger uses it), so SIGINT does not end us;
        with `interrupt_ends` it is noted (`interrupted`) and a child that does not
        end of it is killed after a grace period. SIGTERM and SIGHUP are passed on,
        then SIGKILL after the grace period.
        """

        def escalate() -> None:
            if child.returncode is None:
                child.send_signal(signal.SIGKILL)

        def later(action: Callable[[], None]) -> None:
            import threading

            timer = threading.Timer(GRACE_SECONDS, action)
            timer.daemon = True
            timer.start()

        def forward(signum: int, _frame: FrameType | None) -> None:
            self.signalled = signum
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                return
            later(escalate)

        def interrupt(_signum: int, _frame: FrameType | None) -> None:
            self.interrupted = True  # the child has the same Ctrl-C from the terminal
            later(escalate)

        previous = {signal.SIGINT: signal.signal(
            signal.SIGINT, interrupt if interrupt_ends else signal.SIG_IGN)}
        for signum in (signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, forward)
        try:
            return exit_status(child.wait())
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                child.wait()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            kill_descendants()

    def run(self, options: str, interrupt_ends: bool = False) -> int:
        """Start a replay child and wait for it; its exit status."""
        return self.wait(self.start(options), interrupt_ends)

    def replay(self, options: dict[str, Any], interrupt_ends: bool = False) -> Handback:
        """One replay to its end, started afresh each time its debugger asks to restart.

        Each child hands back (a file named in its options) what it imported, its
        outcome, and, for a restart, its breakpoints: the next child, with today's
        code, gets those and the same saved arguments, but not the `-c` commands.
        """
        import json
        import tempfile

        from .handback import Handback

        descriptor, path = tempfile.mkstemp(prefix="cdip-", suffix=".json")
        os.close(descriptor)
        try:
            while True:
                os.truncate(path, 0)  # a child killed before it writes leaves no stale report
                status = self.run(json.dumps({**options, "handback": path}), interrupt_ends)
                back = Handback.read(path, status)
                if not back.restart or self.interrupted or self.signalled:
                    return back
                options = {**options, "breakpoints": back.breakpoints, "command": []}
                kept = len(back.breakpoints)
                print(f"cdip: restarting in a fresh interpreter with today's code, "
                      f"{kept} breakpoint{'' if kept == 1 else 's'} kept", file=sys.stderr)
        finally:
            os.unlink(path)

    def ready(self) -> None:
        """Start the next child ahead, to wait booted for its options (this interpreter only)."""
        if self._standby is None and is_this_interpreter(self.python):
            try:
                self._standby = Standby(self.env)
            except OSError:
                pass  # the next child starts when it is needed, then

    def close(self) -> None:
        """Send away a child started ahead; leave no descendant behind."""
        if self._standby is not None:
            self._standby.cancel()
            self._standby = None
        kill_descendants()


def runner_importable(python: str) -> bool:
    """Whether `python` can start our replay child (ckpt installed there).

    Raises:
        CkptError: `python` cannot be run at all (a directory, not a program).
    """
    if is_this_interpreter(python):
        return True
    import subprocess

    from .display import printable
    from .errors import CkptError

    try:
        probe = subprocess.run([python, "-I", "-c", "import _ckpt_runner, ckpt"],
                               capture_output=True, timeout=60, check=False)
    except OSError as exc:
        raise CkptError(printable(f"the interpreter {python} cannot be run ({exc.strerror})"),
                        hint=f"pass the path of a Python interpreter, such as {sys.executable}"
                        ) from exc
    return probe.returncode == 0
