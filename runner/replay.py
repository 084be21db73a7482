"""Loading the checkpoint in the child, telling what changed, and entering the mode."""

from __future__ import annotations

import sys

from ckpt import drift
from ckpt.checkpoint import Checkpoint, unpickle_checkpoint, verify_checkpoint
from ckpt.display import printable
from ckpt.errors import CkptError
from ckpt.store import Store
from ckpt.values import Unpicklable

from . import modes
from .resolve import find_function

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .options import Options


def notices(checkpoint: Checkpoint, module_source: str | None) -> list[str]:
    """What to tell before the mode starts: what changed, and what could not be saved."""
    found: list[str] = []
    location = checkpoint.location
    if drift.source_changed(location):
        found.append(f"source of {location['qualname']} changed since capture: "
                     "replaying today's code")
        found += ["  " + line for line in drift.source_changes(location, module_source)]
    found += drift.environment_changes(checkpoint.metadata, location)
    for name, value in checkpoint.arguments.items():
        if isinstance(value, Unpicklable):
            found.append(f"argument {name!r} could not be saved ({value.error}): "
                         "it is a placeholder in this replay")
    return found


def replay(
    options: Options, restore: Callable[[dict[str, Any]], Callable[[str], str]]
) -> int:
    """Verify the checkpoint, restore the captured process, unpickle, run the mode.

    In that order: until the checkpoint verifies, nothing recorded in it (its
    working directory, its `sys.path`) decides where modules are imported from.
    """
    entry = Store(options.store, trust=options.trust).find(options.id)
    if options.trust:
        print("note: --trust: loading without checking the signature", file=sys.stderr)
    verified = verify_checkpoint(entry, trust=options.trust)
    remap = restore(verified.call_detail.metadata)
    checkpoint = unpickle_checkpoint(verified)
    if checkpoint.location.get("file"):
        checkpoint.location["file"] = remap(checkpoint.location["file"])
    function, note = find_function(checkpoint.location, lambda: checkpoint.saved_function)
    error_detail = verified.error_detail
    module_source = error_detail.module_source if error_detail is not None else None
    for line in ([note] if note else []) + notices(checkpoint, module_source):
        print(printable(line), file=sys.stderr)
    if options.mode == "locals":
        frames = checkpoint.frames
        if not frames:
            raise CkptError(f"checkpoint {checkpoint.id} holds no locals: the call did not raise",
                            hint="use --mode shell for its arguments")
        if not -len(frames) <= options.frame < len(frames):
            raise CkptError(f"--frame {options.frame}: there are {len(frames)} saved frames "
                            f"(0 to {len(frames) - 1}, or -1 for the innermost)")
    return modes.run(options, checkpoint, function)
