"""The child's side of the handback: the report `cdip` reads when it ends, the kept breakpoints."""

from __future__ import annotations

import os
import sys

from ckpt.handback import Handback

from .place import environment_entry, git_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class _Pending:
    """The report being made in this child, and the file `cdip` named for it."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.back = Handback()


_PENDING = _Pending()


def hand_back_at_exit(path: str) -> None:
    """Write the report to `path` when this child ends, however it ends (bar being killed)."""
    import atexit

    _PENDING.path = path
    atexit.register(_write)


def supervised() -> bool:
    """Whether `cdip` reads a report of this child (so it can restart one)."""
    return _PENDING.path is not None


def started() -> None:
    """Note the project: the replay's checkout, else its working directory, as it starts."""
    if not supervised():
        return
    cwd = os.getcwd()
    _PENDING.back.project = git_root(cwd) or cwd


def outcome(passed: bool, line: str) -> None:
    """Note how the replayed call ended, in one line (`--watch` shows it)."""
    _PENDING.back.passed, _PENDING.back.line = passed, line


def restart() -> None:
    """Ask `cdip` for a fresh child that starts again with today's code and these breakpoints."""
    if not supervised():
        print("cdip: restart needs `cdip run`, which starts the fresh interpreter",
              file=sys.stderr)
        return
    _PENDING.back.restart = True
    _PENDING.back.breakpoints = kept_breakpoints()


def is_restart(debugger: Any, exc: BaseException) -> bool:
    """Whether `exc` is the debugger's `restart` / `run`: pdb's, ipdb's and pdbpp's Restart.

    Found where the debugger's `do_run` raises it: pdbpp may take over the module
    named `pdb`, so importing that is no way to find the class.
    """
    do_run = getattr(type(debugger), "do_run", None)
    restart_class = getattr(do_run, "__globals__", {}).get("Restart")
    return isinstance(restart_class, type) and isinstance(exc, restart_class)


def pudb_asks_restart(debugger: Any) -> bool:
    """Whether pudb, which has no `restart` for a call, was told to at its session's end."""
    from .debuggers import Pudb

    return supervised() and isinstance(debugger, Pudb) and debugger.offer_restart()


def kept_breakpoints() -> list[dict[str, Any]]:
    """The debugger's breakpoints (bdb keeps them for the process), each once."""
    import bdb

    kept: dict[tuple[str, int, str | None], dict[str, Any]] = {}
    for breakpoint in bdb.Breakpoint.bpbynumber:
        if breakpoint is not None:
            kept.setdefault((breakpoint.file, breakpoint.line, breakpoint.cond), {
                "file": breakpoint.file, "line": breakpoint.line, "cond": breakpoint.cond,
                "temporary": breakpoint.temporary, "enabled": breakpoint.enabled})
    return list(kept.values())


def set_breakpoints(debugger: Any, breakpoints: list[dict[str, Any]]) -> None:
    """Set the breakpoints the previous child kept; say which no longer can be."""
    from ckpt.display import printable

    for kept in breakpoints:
        problem = debugger.set_break(kept["file"], kept["line"], kept["temporary"], kept["cond"])
        if problem:
            print(printable(f"cdip: breakpoint {kept['file']}:{kept['line']} not kept: {problem}"),
                  file=sys.stderr)
        elif not kept["enabled"]:
            debugger.get_breaks(kept["file"], kept["line"])[-1].disable()


def imported_files() -> list[str]:
    """The source files of the modules imported, but the interpreter's own and ckpt's."""
    environment = tuple(os.path.join(entry, "") for entry in sys.path
                        if entry and environment_entry(entry))
    files = set()
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if (not isinstance(file, str) or not file.endswith(".py")
                or name.partition(".")[0] in ("ckpt", "_ckpt_runner")):
            continue
        path = os.path.abspath(file)
        if not path.startswith(environment):
            files.add(path)
    return sorted(files)


def _write() -> None:
    if _PENDING.path is None:
        return
    _PENDING.back.files = imported_files()
    try:
        _PENDING.back.write(_PENDING.path)
    except OSError:
        pass  # cdip is gone, or took the file back: nobody is waiting for it
