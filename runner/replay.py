"""Loading the checkpoint in the child, telling what changed, and entering the mode."""

from __future__ import annotations

import sys

from ckpt import drift, script_classes
from ckpt.binding import Binding
from ckpt.checkpoint import (
    Checkpoint,
    Verified,
    unpickle_checkpoint,
    usable_device,
    verify_checkpoint,
)
from ckpt.display import printable
from ckpt.errors import CkptError
from ckpt.store import Store
from ckpt.values import Redacted, Unpicklable

from . import fixtures, modes, resume
from .place import Place, restore
from .resolve import Scripts, find_function, import_target, saved_copy, saved_copy_note

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .options import Options


def notices(checkpoint: Checkpoint, module_source: str | None,
            binding: Binding | None = None) -> list[str]:
    """What to tell before the mode starts: what changed, and what could not be saved."""
    found: list[str] = []
    location = checkpoint.location
    if drift.source_changed(location):
        found.append(f"source of {location['qualname']} changed since capture: "
                     "replaying today's code")
        found += ["  " + line for line in drift.source_changes(location, module_source)]
    if binding is not None and binding.changes:
        found.append(f"the parameters of {location['qualname']} changed since capture:")
        found += ["  " + line for line in binding.changes]
    found += drift.environment_changes(checkpoint.metadata, location)
    for name, value in checkpoint.arguments.items():
        if isinstance(value, Unpicklable):
            found.append(f"argument {name!r} could not be saved ({value.error}): "
                         "it is a placeholder in this replay")
        elif isinstance(value, Redacted):
            found.append(f"argument {name!r} was redacted at capture (its value was never "
                         f"stored): it is a placeholder, {value!r}, in this replay")
    return found


def code_line(place: Place, function: Callable[..., Any], saved_copy: bool) -> str:
    """The banner's line that names the code that runs and the directory it runs in."""
    code = getattr(function, "__code__", None)
    what = "the copy saved at capture" if saved_copy or code is None else code.co_filename
    return f"code: {what} in {place.cwd} ({place.why})"


def replay(options: Options) -> int:
    """Verify the checkpoint, restore the captured process, import, unpickle, run the mode.

    In that order: until the checkpoint verifies, nothing recorded in it (its
    working directory, its `sys.path`) decides where modules are imported from,
    and no user code runs before the debugger or shell the mode needs is found.
    """
    entry = Store(options.store, trust=options.trust).find(options.id)
    if options.trust:
        print("note: --trust: loading without checking the signature", file=sys.stderr)
    verified = verify_checkpoint(entry, trust=options.trust)
    options.device = usable_device(options.device)  # refused before any user code runs
    detail = verified.call_detail
    place = restore(detail.metadata, detail.location.file, options)
    if options.mode != "run":
        from .debuggers import check

        check(options)  # a debugger or shell that is missing: said before any user code runs
    checkpoint, function, lines, scripts = _load(verified, place, options)
    frames = resume.Frames(checkpoint, verified, place.remap)
    module_source = frames.module_source
    index = resume.chosen(options, checkpoint, frames)
    if index:  # --frame N, --from-changed: that frame's function, not the decorated one
        outer_file = checkpoint.location.get("file")
        checkpoint, function, caveats = resume.resume(frames, index, scripts)
        elsewhere = checkpoint.location["file"] != outer_file
        module_source = None if elsewhere else module_source  # the outer file's source
        lines += [*([code_line(place, function, False)] if elsewhere else []), *caveats]
    elif checkpoint.metadata.get("arguments_from_locals") is True:  # `ckpt run`, the hooks
        lines.append(resume.FROM_STACK.format(checkpoint.location["qualname"]))
    fresh = fixtures.recreate(checkpoint, function)  # a test's capsys, tmp_path: afresh
    binding = checkpoint.bind(function)
    for line in [*lines, *notices(checkpoint, module_source, binding)]:
        print(printable(line), file=sys.stderr)
    if binding.missing and options.mode not in ("shell", "locals"):
        raise CkptError(binding.refusal(checkpoint.name),
                        hint="give it a default, or replay with --mode shell, set it, and call()")
    if options.mode == "locals":
        options.frame = resume.frame_index(checkpoint, options.frame)
    fresh.start()
    return modes.run(options, checkpoint, function, binding)


def _load(verified: Verified, place: Place,
          options: Options) -> tuple[Checkpoint, Callable[..., Any], list[str], Scripts]:
    """The checkpoint's values, the function to replay, the banner's lines so far, the scripts.

    The function's module is imported before the values are unpickled: an instance of
    a class of its script then comes back as an instance of the class the function
    sees, today's (`ckpt.script_classes.script_class` finds it in `scripts`).
    """
    detail = verified.call_detail
    location = detail.location._asdict()
    if location.get("file"):
        location["file"] = place.remap(location["file"])
    note = saved_copy_note(location, list(detail.metadata.get("argv", [])))
    # Said before anything is imported: whose code is about to run, and from where.
    where = "the copy saved at capture" if note is not None else location.get("file")
    print(printable(f"code: {where or location['module']} in {place.cwd} ({place.why})"),
          file=sys.stderr, flush=True)
    scripts = Scripts(place.remap, options.run_script_top_level)
    script_classes.find_scripts_with(scripts.find)
    module = import_target(location, scripts) if note is None else None
    checkpoint = unpickle_checkpoint(verified, device=options.device)
    checkpoint.location = location
    if module is not None:
        function = find_function(location, module, skipped=bool(scripts.notes))
    else:
        function = saved_copy(location["qualname"], lambda: checkpoint.saved_function)
    code = getattr(function, "__code__", None)
    moved = note is None and code is not None and code.co_filename != location.get("file")
    lines = [*([code_line(place, function, False)] if moved else []),  # found elsewhere
             *([note] if note else []), *scripts.notes]
    return checkpoint, function, lines, scripts

