"""What a replay child hands back to `cdip` when it ends: outcome, imported files, a restart."""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


class Handback:
    """The child's report to its supervisor, written to a file `cdip` names in its options.

    Attributes:
        status: the child's exit status (the supervisor's to fill in, not the child's).
        passed: whether the replayed call returned; None when it never ran.
        line: the outcome in one line (`NAME raised ValueError: ...`), "" when none.
        files: the source files of the modules the replay imported (not the
            interpreter's own standard library and packages).
        project: the replay's project directory (its checkout, else its working directory).
        restart: the debugger asked to restart (`restart` / `run` in pdb).
        breakpoints: the debugger's breakpoints, as `Options.breakpoints` takes them.
    """

    def __init__(self, status: int = 0, passed: bool | None = None, line: str = "",
                 files: Sequence[str] = (), project: str | None = None, restart: bool = False,
                 breakpoints: Sequence[dict[str, Any]] = ()) -> None:
        self.status, self.passed, self.line = status, passed, line
        self.files, self.project = list(files), project
        self.restart, self.breakpoints = restart, list(breakpoints)

    @classmethod
    def read(cls, path: str, status: int) -> Handback:
        """What the child wrote to `path`; nothing known when it wrote nothing (it was killed)."""
        try:
            with open(path, encoding="utf-8") as file:
                fields = json.load(file)
        except (OSError, ValueError):
            return cls(status=status)
        if not isinstance(fields, dict):
            return cls(status=status)
        # Written by the ckpt of the replay's interpreter, which may be another version:
        # only the fields this one knows, of the types it expects, are taken.
        kept = {name: fields[name] for name, valid in _FIELDS.items()
                if name in fields and valid(fields[name])}
        return cls(status=status, **kept)

    def write(self, path: str) -> None:
        """Write the report to the file `cdip` made for it (never one planted in its place)."""
        fields = {"passed": self.passed, "line": self.line, "files": self.files,
                  "project": self.project, "restart": self.restart,
                  "breakpoints": self.breakpoints}
        descriptor = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
        with open(descriptor, "w", encoding="utf-8") as file:
            json.dump(fields, file)


def _texts(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _breakpoints(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(kept, dict) and isinstance(kept.get("file"), str)
        and type(kept.get("line")) is int and isinstance(kept.get("cond"), (str, type(None)))
        # pdb's do_break gives temporary as 0 or 1
        and isinstance(kept.get("temporary"), int) and isinstance(kept.get("enabled"), int)
        for kept in value)


_FIELDS: dict[str, Callable[[object], bool]] = {
    "passed": lambda value: value is None or isinstance(value, bool),
    "line": lambda value: isinstance(value, str),
    "files": _texts,
    "project": lambda value: value is None or isinstance(value, str),
    "restart": lambda value: isinstance(value, bool),
    "breakpoints": _breakpoints,
}
