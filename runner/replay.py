"""Loading the checkpoint in the child, telling what changed, and entering the mode."""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Any, Callable

from ckpt.checkpoint import Checkpoint, read_checkpoint
from ckpt.errors import CkptError
from ckpt.fileformat import read_headers
from ckpt.source import source_hash
from ckpt.store import Store

from . import modes
from .resolve import find_function


def notices(checkpoint: Checkpoint) -> list[str]:
    """What differs between capture and now: source, Python, package versions."""
    found: list[str] = []
    location = checkpoint.location
    recorded = location.get("source_hash")
    if recorded and location.get("file"):
        now = source_hash(location["file"], location["qualname"])
        if now is not None and now != recorded:
            found.append(f"source of {location['qualname']} changed since capture: "
                         "replaying today's code")
    then = checkpoint.metadata.get("python")
    if then and then != platform.python_version():
        found.append(f"Python {platform.python_version()} now, {then} at capture")
    found += package_drift(checkpoint.metadata.get("packages") or {})
    return found


def package_drift(recorded: dict[str, str]) -> list[str]:
    """One line per distribution whose version differs from capture."""
    from importlib import metadata

    drift = []
    for distribution, then in sorted(recorded.items()):
        try:
            now = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            now = "not installed"
        if now != then:
            drift.append(f"{distribution} {now} now, {then} at capture")
    return drift


def replay(options: argparse.Namespace, restore: Callable[[dict[str, Any]], None]) -> int:
    """Restore the captured process, load the checkpoint and run the mode."""
    entry = Store(Path(options.store)).find(options.id)
    metadata = read_headers(str(entry.call_path))[1].get("metadata", {})
    restore(metadata)
    if options.trust:
        print("note: --trust: loading without checking the signature", file=sys.stderr)
    checkpoint = read_checkpoint(entry, trust=options.trust)
    function, note = find_function(checkpoint.location, checkpoint.saved_function)
    for line in ([note] if note else []) + notices(checkpoint):
        print(line, file=sys.stderr)
    if options.mode == "locals":
        frames = checkpoint.frames
        if not frames:
            raise CkptError(f"checkpoint {checkpoint.id} holds no locals: the call did not raise",
                            hint="use --mode shell for its arguments")
        if not -len(frames) <= options.frame < len(frames):
            raise CkptError(f"--frame {options.frame}: there are {len(frames)} saved frames "
                            f"(0 to {len(frames) - 1}, or -1 for the innermost)")
    return modes.run(options, checkpoint, function)
