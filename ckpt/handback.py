"""What a replay child hands back to `cdip` when it ends: outcome, imported files, a restart."""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
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
            return cls(status=status, **fields)
        except (OSError, ValueError, TypeError):
            return cls(status=status)

    def write(self, path: str) -> None:
        """Write the report to the file `cdip` made for it (never one planted in its place)."""
        fields = {"passed": self.passed, "line": self.line, "files": self.files,
                  "project": self.project, "restart": self.restart,
                  "breakpoints": self.breakpoints}
        descriptor = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
        with open(descriptor, "w", encoding="utf-8") as file:
            json.dump(fields, file)
