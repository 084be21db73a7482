"""The debuggers and shells a replay can enter: one table, checked before any user code runs."""

from __future__ import annotations

import collections
import sys

from ckpt.errors import CkptError

from . import dap

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType, TracebackType
    from typing import Any

    from .options import Options


class Tool(collections.namedtuple("Tool", "module package make check start",
                                  defaults=(None, None))):
    """A debugger or shell: the module it needs, the package that installs it, a factory."""

    __slots__ = ()
    module: str  # must be importable in the replay interpreter
    package: str  # what `pip install` needs; "" for the standard library
    make: Callable[[], Any] | None
    check: Callable[[Options], None] | None  # refuses what it cannot do, before user code
    start: Callable[[Options], None] | None  # before the function runs (debugpy: listen)


def _pdb() -> Any:
    import pdb

    return pdb.Pdb()


def _ipdb() -> Any:
    from IPython.terminal.debugger import TerminalPdb

    make: Any = TerminalPdb  # (IPython's API is untyped)
    return make()


def _pdbpp() -> Any:
    import pdbpp

    return pdbpp.Pdb()


def _pudb() -> Any:
    return Pudb()


def _debugpy() -> Any:
    return dap.Debugpy()


DEBUGGERS = {
    "pdb": Tool("pdb", "", _pdb),
    "ipdb": Tool("IPython", "ipdb", _ipdb),
    "pudb": Tool("pudb", "pudb", _pudb),
    "pdbpp": Tool("pdbpp", "pdbpp", _pdbpp),
    "debugpy": Tool("debugpy", "debugpy", _debugpy, dap.check, dap.listen),  # an IDE, over DAP
}
SHELLS = {"python": Tool("code", "", None), "ipython": Tool("IPython", "ipython", None)}


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check(options: Options) -> None:
    """Refuse what the mode will need and cannot have, before any user code runs.

    Raises:
        CkptError: the debugger or shell is not installed in this interpreter, or
            pudb was given -c commands.
    """
    from .modes import MODES

    what = MODES[options.mode].tool
    if what == "debugger":
        name, tool = options.debugger, DEBUGGERS[options.debugger]
    elif what == "shell":
        name, tool = options.shell, SHELLS[options.shell]
    else:
        return
    if tool.package and not _installed(tool.module):
        raise CkptError(
            f"the {what} {name} is not installed in {sys.executable}",
            hint=f"install it there (`{sys.executable} -m pip install {tool.package}`), "
                 f"or leave out --{what}")
    if name == "pudb" and options.command:
        raise CkptError("pudb is a full-screen debugger and takes no -c commands",
                        hint="use --debugger pdb for scripted sessions")
    if tool.check is not None:
        tool.check(options)


def start(options: Options) -> None:
    """Start what the debugger needs before the function runs (debugpy: listen for the IDE)."""
    begin = DEBUGGERS[options.debugger].start
    if begin is not None:
        begin(options)


def make_debugger(options: Options) -> Any:
    """A pdb-compatible debugger with the `-c` commands queued, the kept breakpoints set."""
    make = DEBUGGERS[options.debugger].make
    assert make is not None
    try:
        debugger = make()
    except ImportError as exc:  # installed, but broken
        raise CkptError(f"the debugger {options.debugger} cannot be imported: {exc}") from exc
    debugger.rcLines.extend(options.command)
    if options.breakpoints:  # kept from the child before a restart
        from .handback import set_breakpoints

        set_breakpoints(debugger, options.breakpoints)
    return debugger


def post_mortem(debugger: Any, exc: BaseException, tb: TracebackType | None,
                start: FrameType | None) -> None:
    """Open `debugger` on `tb` at the frame `start`; up and down still reach every frame."""
    if isinstance(debugger, (Pudb, dap.Debugpy)):
        debugger.post_mortem(exc, tb, start)
        return
    original = debugger.get_stack

    def get_stack(frame: FrameType | None, tb: TracebackType | None) -> Any:
        stack, index = original(frame, tb)
        frames = [entry[0] for entry in stack]
        return stack, frames.index(start) if start in frames else index

    debugger.get_stack = get_stack
    debugger.reset()
    debugger.interaction(None, tb)


class Pudb:
    """pudb behind the few pdb methods the modes use (it is a full-screen UI)."""

    def __init__(self) -> None:
        import pudb

        self._pudb = pudb
        self.rcLines: list[str] = []

    def runcall(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `function` under pudb, stopped at its first line."""
        return self._pudb.runcall(function, *args, **kwargs)

    def set_break(self, filename: str, line: int, temporary: bool = False,
                  cond: str | None = None) -> str | None:
        """A breakpoint in pudb's debugger; why not, as bdb says it, when it cannot be set."""
        debugger = self._pudb._get_debugger()
        if debugger.get_breaks(filename, line):
            return None  # pudb set it already, from the breakpoints it saves itself
        problem: str | None = debugger.set_break(filename, line, temporary=temporary, cond=cond)
        return problem

    def get_breaks(self, filename: str, line: int) -> list[Any]:
        """The breakpoints at `filename`:`line`."""
        breaks: list[Any] = self._pudb._get_debugger().get_breaks(filename, line)
        return breaks

    def offer_restart(self) -> bool:
        """The end-of-session dialog of pudb's own script runner: restart, or quit.

        pudb has no restart command while it debugs a call; here, restarting is a
        fresh interpreter with today's code and the breakpoints, which `cdip` starts.
        """
        import urwid
        from pudb.settings import load_config  # type: ignore[import-untyped]

        if not load_config()["prompt_on_quit"]:
            return False
        debugger = self._pudb._get_debugger()
        text = urwid.Text("Your PuDB session has ended.\n\nRestart in a fresh interpreter, "
                          "with today's code and your breakpoints, or quit?\n"
                          "You may hit 'r' to restart, 'q' to quit.")
        # Quit first, the answer Enter gives: as it was before restarting was offered
        answer = debugger.ui.call_with_ui(
            debugger.ui.dialog, urwid.ListBox(urwid.SimpleListWalker([text])),
            [("Quit", "quit"), ("Restart", "restart")], focus_buttons=True,
            bind_enter_esc=False, title="Finished",
            extra_bindings=[("q", "quit"), ("r", "restart")])
        return bool(answer == "restart")

    def post_mortem(self, exc: BaseException, tb: TracebackType | None,
                    start: FrameType | None) -> None:
        """Open the post-mortem UI of pudb at the frame `start`."""
        debugger = self._pudb._get_debugger()
        debugger.reset()
        original = debugger.set_frame_index

        def first_index(index: int) -> None:
            # pudb opens post-mortems at the innermost frame; only this first choice is ours
            debugger.set_frame_index = original
            frames = [entry[0] for entry in debugger.stack]
            original(frames.index(start) if start in frames else index)

        debugger.set_frame_index = first_index
        debugger.interaction(None, (type(exc), exc, tb))
