"""The options `cdip run` hands the replay child, as one JSON object."""

from __future__ import annotations

import json
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


class Options:
    """What `cdip run` asks of the runner: one JSON object, as its only argument.

    Not argparse: building a parser costs a replay ~10 ms, and only `cdip` calls us.
    """

    def __init__(self, store: str, id: str, mode: str, frame: int | None = None,
                 debugger: str = "pdb", shell: str = "python", json: bool = False,
                 trust: bool = False, command: Sequence[str] = (),
                 cwd: str | None = None, run_script_top_level: bool = False,
                 device: str | None = None, from_changed: bool = False,
                 handback: str | None = None,
                 breakpoints: Sequence[dict[str, Any]] = (),
                 listen: Sequence[Any] = ("127.0.0.1", 5678),
                 wait_for_client: bool = False) -> None:
        self.store, self.id, self.mode, self.frame = store, id, mode, frame
        self.debugger, self.shell, self.json, self.trust = debugger, shell, json, trust
        self.command = list(command)
        self.cwd = cwd  # --cwd: the directory to replay in, over any other
        # --run-script-top-level: import a script whole, not only its definitions
        self.run_script_top_level = run_script_top_level
        self.device = device  # --device: where saved tensors go (None: captured, else CPU)
        # --from-changed: re-call the innermost saved frame whose function's source changed
        self.from_changed = from_changed
        # the file this child reports to `cdip` in when it ends (ckpt.handback), if any
        self.handback = handback
        self.breakpoints = list(breakpoints)  # a debugger's, kept across its restart
        # --debugger debugpy: where the IDE attaches (host, port), and whether to wait for it
        self.listen: tuple[str, int] = (str(listen[0]), int(listen[1]))
        self.wait_for_client = wait_for_client


def parse(arguments: Sequence[str]) -> Options | None:
    """The options `cdip run` passed, or None (and a message) when they are not ours."""
    try:
        return Options(**json.loads(arguments[0]))
    except (IndexError, ValueError, TypeError):
        print("_ckpt_runner: this is the replay child of `cdip run`; use that command",
              file=sys.stderr)
        return None
