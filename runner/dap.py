"""The replay under debugpy: an IDE (VS Code, nvim-dap, any DAP client) attaches."""

from __future__ import annotations

import os
import sys

from ckpt.errors import CkptError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType, TracebackType
    from typing import Any

    from .options import Options

# debugpy is imported only here, and only in this mode: it is an optional extra (ckpt[loop]).

# The first debugpy that can stop an IDE at an exception already caught
# (`trigger_exception_handler`): a replay's exception is caught by the mode.
_FIRST_USABLE = "1.8.22"
# Our own breakpoints (the first line in break mode) take ids far from the IDE's,
# which debugpy numbers from 0 in each session.
_OWN_BREAKPOINT_IDS = 1 << 30

_listening: tuple[str, int] | None = None  # where the adapter accepts the IDE
EXIT_INTERRUPTED = 128 + 2  # as a shell reports a command ended by Ctrl-C (SIGINT)


def check(options: Options) -> None:
    """Refuse what debugpy cannot do here, before any user code runs.

    Raises:
        CkptError: -c commands were given, or debugpy is too old.
    """
    if options.command:
        raise CkptError("debugpy takes no -c commands: your IDE sets the breakpoints and "
                        "evaluates", hint="use --debugger pdb for scripted sessions")
    try:
        import debugpy
    except ImportError as exc:  # installed, but broken
        raise CkptError(f"the debugger debugpy cannot be imported: {exc}") from exc
    if not hasattr(debugpy, "trigger_exception_handler"):
        raise CkptError(
            f"debugpy {getattr(debugpy, '__version__', '?')} in {sys.executable} cannot stop "
            f"your IDE at an exception: --debugger debugpy needs {_FIRST_USABLE} or later",
            hint=f"`{sys.executable} -m pip install -U debugpy`")


def listen(options: Options) -> None:
    """Listen for an IDE, say where; with --wait-for-client, wait for one before running.

    Raises:
        CkptError: the address cannot be listened on (taken, or not this machine's).
    """
    global _listening
    host, port = options.listen
    if ":" in host:  # its adapter would fail in a thread of its own, and listen() wait forever
        raise CkptError(f"debugpy cannot listen on {_joined(host, port)}: the adapter in the "
                        "replay's process listens on IPv4 only",
                        hint=f"use --listen 127.0.0.1:{port} (or an IPv4 address of yours)")
    # Its frozen-module warning concerns breakpoints in the standard library, not the
    # user's code, and would come before every replay.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    import debugpy

    try:
        _try_binding(host, port)
        # In this process: no adapter process to start (it halves the start-up) or to
        # leave behind; what it cannot do, debug the processes the call starts, a
        # replay of one call does not need.
        _listening = debugpy.listen((host, port), in_process_debug_adapter=True)
    except (RuntimeError, OSError) as exc:
        raise CkptError(f"debugpy cannot listen on {_joined(host, port)}: {exc}",
                        hint="pick another address with --listen HOST:PORT "
                             "(port 0: any free one)") from exc
    if _reachable_from_elsewhere(host):
        print(f"debugpy: warning: {host} can be reached from other machines, and whoever "
              "attaches runs code as you: prefer 127.0.0.1 (and `ssh -L` from afar)",
              file=sys.stderr, flush=True)
    waiting = "; waiting for it before running" if options.wait_for_client else ""
    print(f"debugpy: listening on {_address()}: attach your IDE there (VS Code: a "
          f"\"Python Debugger: Remote Attach\" configuration){waiting}",
          file=sys.stderr, flush=True)
    if options.wait_for_client:
        debugpy.wait_for_client()


def _reachable_from_elsewhere(host: str) -> bool:
    """Whether a socket on `host` may accept connections from other machines."""
    import ipaddress

    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: it may resolve to any interface


def _try_binding(host: str, port: int) -> None:
    """Bind `host:port` as debugpy's in-process adapter will, and let go (OSError if not).

    The adapter binds in a thread of its own, and `debugpy.listen` then waits
    forever for a socket that failed (debugpy 1.8.22): a taken port would hang.
    """
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def _address() -> str:
    host, port = _listening or ("?", 0)
    return _joined(host, port)


def _joined(host: str, port: int) -> str:
    """HOST:PORT as --listen takes it: an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _wait_for_ide(why: str) -> None:
    """Return once an IDE is attached and configured (its breakpoints set)."""
    import debugpy

    if not debugpy.is_client_connected():
        print(f"debugpy: waiting for your IDE to attach at {_address()}, {why} "
              "(Ctrl-C to give up)", file=sys.stderr, flush=True)
    debugpy.wait_for_client()  # also until the IDE's configurationDone: its breakpoints are in


def _stop_once_at(filename: str, line: int) -> None:
    """Make the IDE stop the first time `line` of `filename` runs.

    debugpy has no public call for a breakpoint the IDE did not set; this is the
    call its own setBreakpoints handler makes. Should a later debugpy change it,
    the replay goes on without this stop, and says so.
    """
    try:
        # vendored in debugpy, and on sys.path once it runs: no stubs, untyped
        import pydevd  # type: ignore[import-not-found]
        from _pydevd_bundle.pydevd_api import PyDevdAPI  # type: ignore[import-not-found]

        debugger: Any = pydevd.get_global_debugger()
        policy = "ALL" if debugger.multi_threads_single_notification else "NONE"
        PyDevdAPI().add_breakpoint(debugger, filename, "python-line", _OWN_BREAKPOINT_IDS + line,
                                   line, None, "None", None, policy, "@HIT@ == 1", None)
    except Exception as exc:  # debugpy's internals: anything can change
        from ckpt.display import printable

        print(printable(f"debugpy: cannot stop at {filename}:{line} by itself ({exc}): set "
                        "a breakpoint there in your IDE"), file=sys.stderr, flush=True)


class Debugpy:
    """debugpy behind the few pdb methods the modes use: the IDE is the user interface."""

    def __init__(self) -> None:
        self.rcLines: list[str] = []  # pdb's name; "continue" is all we read
        self._stops: list[tuple[str, int]] = []

    def set_break(self, filename: str, line: int, temporary: bool = False,
                  cond: str | None = None) -> None:
        """Stop the IDE at `line` of `filename`, once (pdb's signature; `cond` unused)."""
        self._stops.append((filename, line))

    def runcall(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call `function` with the IDE stopped at its first body line.

        Unless the first queued command is "continue" (as pdb's would be): then the
        IDE stops only at the lines of `set_break` and its own breakpoints.
        """
        code = getattr(function, "__code__", None)
        if code is not None and self.rcLines[:1] != ["continue"]:
            from .modes import _first_body_line

            self._stops.append((code.co_filename, _first_body_line(code)))
        try:
            _wait_for_ide("to stop at the function's first line")
            for filename, line in self._stops:
                _stop_once_at(filename, line)
            return function(*args, **kwargs)
        except KeyboardInterrupt:
            # Ctrl-C in the terminal, while the IDE waited or the call ran: the end of it
            print("\ndebugpy: interrupted (Ctrl-C): the replay ends", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_INTERRUPTED) from None

    def post_mortem(self, exc: BaseException, tb: TracebackType | None,
                    start: FrameType | None) -> None:
        """Stop the IDE at the frame that raised `exc`, with the exception shown.

        The frames have unwound: the IDE shows them, and their variables, as they were
        when `exc` was raised (stepping on is not possible, as in pdb's post-mortem).
        `start` is left to the IDE: its "just my code" hides library frames.
        """
        import debugpy

        try:
            _wait_for_ide("to show the exception")
            print("debugpy: your IDE is stopped at the exception; continue or disconnect to "
                  "end", file=sys.stderr, flush=True)
            debugpy.trigger_exception_handler((type(exc), exc, tb), as_uncaught=False)
        except KeyboardInterrupt:
            # Ctrl-C in the terminal: the session ends as with pdb's `q`, the outcome stands
            print("\ndebugpy: interrupted (Ctrl-C): the replay ends", file=sys.stderr, flush=True)
