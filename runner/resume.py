"""Resuming from a saved inner frame: its function re-called with its saved locals as arguments.

`cdip run NAME --frame N` (or `--from-changed`) skips the work above frame N: the
function of that frame is imported from today's source and called with the values
its parameters held in the locals saved at the error. Those are not always the
values it was called with: each parameter its body assigns to is named, and a value
changed in place (a list appended to) cannot be told from one passed that way.
"""

from __future__ import annotations

import os
import sys
import types

from ckpt import drift
from ckpt.binding import parameter_assignments, parameters
from ckpt.checkpoint import Checkpoint, unwrap
from ckpt.errors import CkptError
from ckpt.header import NOT_FUNCTIONS, FrameInfo
from ckpt.values import Unpicklable

from .resolve import Scripts, import_target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ckpt.checkpoint import Verified

    from .options import Options

# Values of these types cannot be changed in place: what was saved is what was passed
# (unless the name was assigned to).
_IMMUTABLE = (int, float, complex, str, bytes, bool, type(None), range, frozenset, type)
_LOCALS = ".<locals>."
# Said of a checkpoint that `ckpt run` or an excepthook saved (`ckpt.stack`), replayed whole.
FROM_STACK = ("{} was saved from the crash's stack, not by a decorator: its arguments are its "
              "parameters' values at the error, from its frame's locals (not necessarily the "
              "values it was called with)")


class Frames:
    """The saved frames of a checkpoint: their headers and their unpickled locals."""

    def __init__(self, checkpoint: Checkpoint, verified: Verified,
                 remap: Callable[[str], str]) -> None:
        detail = verified.error_detail
        self.infos: tuple[FrameInfo, ...] = detail.frames if detail is not None else ()
        self.locals = [frame.locals for frame in checkpoint.frames]
        self.module_source = detail.module_source if detail is not None else None
        self.checkpoint, self.remap = checkpoint, remap

    def where(self, index: int) -> str:
        """'frame N, QUALNAME (file:line)' for messages."""
        info = self.infos[index]
        return f"frame {index}, {info.qualname} ({info.file}:{info.line})"

    def location(self, index: int) -> dict[str, Any]:
        """The frame's function as a `Location` dict (as `drift` and `resolve` read one).

        A frame saved before frames had hashes of their own, in the decorated
        function's file, is compared with that file's source saved at capture.
        """
        info, outer = self.infos[index], self.checkpoint.location
        recorded = info.source_hash
        if recorded is None and self.module_source and info.file == outer.get("file"):
            import hashlib

            from ckpt.source import function_source

            source = function_source(self.module_source, info.qualname)
            recorded = hashlib.sha256(source.encode()).hexdigest()[:16] if source else None
        return {"module": info.module, "qualname": info.qualname, "file": self.remap(info.file),
                "line": None, "source_hash": recorded, "file_hash": info.file_hash,
                "main": bool(info.main), "coroutine": False}

    def innermost_changed(self) -> int:
        """The innermost frame whose function's source changed since capture.

        Raises:
            CkptError: none did (or none could be compared).
        """
        for index in range(len(self.infos) - 1, -1, -1):
            if drift.source_changed(self.location(index)):
                return index
        known = sum(1 for index in range(len(self.infos))
                    if self.location(index)["source_hash"] is not None)
        raise CkptError(f"--from-changed: the source of none of the {len(self.infos)} saved "
                        f"frames' functions changed since capture ({known} could be compared)",
                        hint="edit the function to fix first, or choose one with --frame N")


def chosen(options: Options, checkpoint: Checkpoint, frames: Frames) -> int:
    """The saved frame whose function to call: 0 is the decorated function itself.

    With `--mode locals`, `--frame` keeps choosing whose locals the shell shows
    (and `--from-changed` chooses it the same way); 0 is returned then.
    """
    if not options.from_changed and (options.frame is None or options.mode == "locals"):
        return 0
    if options.from_changed:
        frame_index(checkpoint, None)  # the checkpoint must hold frames
        index = frames.innermost_changed()
        print(f"--from-changed: {frames.where(index)} changed since capture", file=sys.stderr)
    else:
        index = frame_index(checkpoint, options.frame)
        if options.frame is not None and options.frame < 0 and options.mode != "locals":
            index = _callable_outward(frames, index, options.frame)
    if options.mode == "locals":
        options.frame = index
        return 0
    if index == 0:
        print(f"frame 0 is {checkpoint.name} itself: replaying it with its saved arguments",
              file=sys.stderr)  # (at its call for a decorator; at the error for `ckpt run`)
    return index


def _callable_outward(frames: Frames, index: int, asked: int) -> int:
    """Frame `index`, or the nearest frame around it that can be called again; said if not it.

    A count from the innermost (`--frame -1`) means a function to re-call: a lambda,
    a comprehension or a generator expression there (on Python 3.11, comprehensions
    have frames of their own) is passed over for the function that holds it.
    """
    found = _nearest_callable(frames, index)
    if found is None or found == index:
        return index
    what = NOT_FUNCTIONS[frames.infos[index].function]
    print(f"--frame {asked}: {frames.where(index)} is {what}, which cannot be re-called: "
          f"re-calling {frames.where(found)}, the nearest frame around it that can be",
          file=sys.stderr)
    return found


def _nearest_callable(frames: Frames, index: int) -> int | None:
    """The innermost frame from `index` outward that is a function, not a lambda or the like."""
    for found in range(index, -1, -1):
        if frames.infos[found].function not in NOT_FUNCTIONS:
            return found
    return None


def frame_index(checkpoint: Checkpoint, frame: int | None) -> int:
    """`--frame N` as an index from 0 (-1 the innermost); the user's innermost for None.

    Raises:
        CkptError: the checkpoint holds no frames, or none numbered N.
    """
    frames = checkpoint.frames
    if not frames:
        raise CkptError(f"checkpoint {checkpoint.id} holds no locals: the call did not raise",
                        hint="use --mode shell for its arguments")
    if frame is None:
        from .frames import innermost_user

        return innermost_user([saved.file for saved in frames])
    if not -len(frames) <= frame < len(frames):
        saved = "there is 1 saved frame (0" if len(frames) == 1 else \
            f"there are {len(frames)} saved frames (0 to {len(frames) - 1}"
        raise CkptError(f"--frame {frame}: {saved}, or -1 for the innermost)")
    return frame % len(frames)


def resume(frames: Frames, index: int, scripts: Scripts,
           ) -> tuple[Checkpoint, Callable[..., Any], list[str]]:
    """The frame's function as it is today, a checkpoint of its saved arguments, and what to say.

    Raises:
        CkptError: the function cannot be found again (one line says why).
    """
    info = frames.infos[index]
    function = _resolve(frames, index, scripts)
    saved = frames.locals[index]
    declared = [(name, kind) for name, kind in info.parameters] if info.parameters is not None \
        else [(p.name, p.kind) for p in parameters(function) or []]
    arguments = {name: saved[name] for name, _ in declared if name in saved}
    outer = frames.checkpoint
    checkpoint = Checkpoint(
        id=outer.id, name=info.qualname, trigger=outer.trigger, created=outer.created,
        arguments=arguments, kinds=dict(declared), frames=outer.frames[index:],
        exception=outer.exception, metadata=outer.metadata, location=frames.location(index))
    return checkpoint, function, _caveats(frames, index, function, arguments, declared)


def _caveats(frames: Frames, index: int, function: Callable[..., Any],
             arguments: dict[str, Any], declared: list[tuple[str, str]]) -> list[str]:
    """Say that the arguments are the locals at the error, and which of them may not be."""
    info = frames.infos[index]
    lines = [f"{frames.where(index)}: re-calling it with today's code, its arguments taken "
             "from its locals saved at the error (not necessarily the values it was called with)"]
    gone = [name for name, _ in declared if name not in arguments]
    if gone:
        lines.append(f"  no value was saved for {', '.join(gone)} (deleted before the error?)")
    code = getattr(function, "__code__", None)
    # Today's code is the code the frame ran when its source is unchanged: its lines hold.
    same = code is not None and not drift.source_changed(frames.location(index))
    lines_of = parameter_assignments(code) if code is not None else {}
    if info.reassigned is not None:
        assigned, whose = info.reassigned, "its body at capture"
    else:  # saved before frames said so: today's code is all there is to read
        assigned, whose = sorted(lines_of), "today's code of its body"
    for name in (name for name in assigned if name in arguments):
        at = ""
        if same and lines_of.get(name):
            listed = ", ".join(map(str, lines_of[name]))
            at = f" (line {listed}; the error was at line {info.line})"
        lines.append(f"  {name} is assigned to in {whose}{at}: its saved value is the one at "
                     "the error, which may not be the one passed in")
    import inspect  # only when a frame is resumed: not on every replay's start

    if getattr(code, "co_flags", 0) & (inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR):
        lines.append(f"  {info.qualname} is a generator: re-called, it starts again from its "
                     "first line, and yields again what it yielded before the error")
    mutable = [f"{name} ({type(value).__name__})" for name, value in arguments.items()
               if not _immutable(value) and not isinstance(value, Unpicklable)]
    if mutable:
        lines.append(f"  {', '.join(mutable)}: mutable; a change made in place before the "
                     "error (an append, an attribute set) cannot be known")
    return lines


def _immutable(value: Any, depth: int = 0) -> bool:
    if isinstance(value, tuple) and depth < 3:
        return all(_immutable(item, depth + 1) for item in value)
    return isinstance(value, _IMMUTABLE)


def _resolve(frames: Frames, index: int, scripts: Scripts) -> Callable[..., Any]:
    """The function of saved frame `index`, as today's source defines it.

    Raises:
        CkptError: it is no function, or cannot be found by its module and qualified name.
    """
    info = frames.infos[index]
    qualname = info.qualname
    what = NOT_FUNCTIONS.get(info.function)
    if what is not None:
        nearest = _nearest_callable(frames, index)
        raise CkptError(f"{frames.where(index)} cannot be re-called: it is {what}, not a "
                        "function", hint="choose another frame with --frame N" if nearest is None
                        else f"the nearest frame around it that can be is --frame {nearest}")
    if _LOCALS in qualname:
        return _nested(frames, index, scripts)
    module = _module(frames, index, scripts)
    found: Any = module
    for part in qualname.split("."):
        owner = found
        found = _attribute(owner, part)
        if found is None:
            raise CkptError(f"{frames.where(index)} cannot be re-called: "
                            f"{getattr(module, '__name__', '?')}:{qualname} no longer exists",
                            hint="it was renamed or deleted since capture")
    return _own_code(found, info)


def _attribute(owner: Any, name: str) -> Any:
    """`owner.name`; for a class, as its body defines it (a static or class method unbound)."""
    if isinstance(owner, type):
        for klass in owner.__mro__:
            if name in vars(klass):
                return vars(klass)[name]
        return None
    return getattr(owner, name, None)


def _own_code(found: Any, info: FrameInfo) -> Callable[..., Any]:
    """The function whose code the frame ran, under any decorator that keeps `__wrapped__`.

    Seen through: a property, a static or class method, ckpt's decorator. Called
    directly with the frame's saved arguments (`self` or `cls` among them), as the
    frame was: a decorator around it does not see the call twice.
    """
    if isinstance(found, property):
        found = found.fget
    found = getattr(found, "func", found) if type(found).__name__ == "cached_property" else found
    found = unwrap(found)
    current = found
    for _ in range(100):  # a longer __wrapped__ chain is a loop
        code = getattr(current, "__code__", None)
        if code is not None and code.co_name == info.function:
            return current  # type: ignore[no-any-return]
        current = getattr(current, "__wrapped__", None)
        if current is None:
            break
    if not callable(found) or getattr(found, "__code__", None) is None:
        raise CkptError(f"{info.module}:{info.qualname} is no longer a function "
                        f"(it is a {type(found).__name__})", hint="choose another frame")
    return found  # type: ignore[no-any-return]


def _module(frames: Frames, index: int, scripts: Scripts) -> types.ModuleType:
    """The frame's module, imported from today's source (a script as `Scripts` imports it)."""
    info, location = frames.infos[index], frames.location(index)
    if info.module is not None:
        return import_target(location, scripts)
    # saved before frames named their module: one imported meanwhile from that file
    path = os.path.realpath(location["file"])
    for module in list(sys.modules.values()):
        if os.path.realpath(getattr(module, "__file__", None) or "/") == path:
            return module
    raise CkptError(f"{frames.where(index)} cannot be re-called: its module is not recorded "
                    "(an older checkpoint) and no module imported from that file",
                    hint="capture it again with this version of ckpt")


def _nested(frames: Frames, index: int, scripts: Scripts) -> Callable[..., Any]:
    """A function defined inside another: today's code of it, closed over saved values.

    Resolvable when the enclosing function's frame is saved below the decorated function
    (its locals hold the values the nested function closes over) and it is itself
    resolvable; its code is found in today's enclosing function.
    """
    info = frames.infos[index]
    enclosing_name, _, name = info.qualname.rpartition(_LOCALS)
    enclosing = next((j for j in range(index - 1, -1, -1)
                      if frames.infos[j].qualname == enclosing_name), None)
    why = None
    if "." in name:
        why = "it is a method of a class defined inside a function"
    elif enclosing is None:
        why = f"it is defined inside {enclosing_name}, whose frame was not saved"
    if why is not None or enclosing is None:
        raise CkptError(f"{frames.where(index)} cannot be re-called: {why}",
                        hint="choose the frame of the function that defines it with --frame N")
    outer = _resolve(frames, enclosing, scripts)
    code = next((const for const in outer.__code__.co_consts
                 if isinstance(const, types.CodeType) and const.co_name == name), None)
    if code is None:
        raise CkptError(f"{frames.where(index)} cannot be re-called: today's {enclosing_name} "
                        f"defines no {name}", hint="it was renamed or deleted since capture")
    saved = frames.locals[enclosing]
    absent = [var for var in code.co_freevars if var not in saved]
    if absent:
        raise CkptError(f"{frames.where(index)} cannot be re-called: the values it closes "
                        f"over ({', '.join(absent)}) were not saved in {enclosing_name}'s frame")
    cells = tuple(types.CellType(saved[var]) for var in code.co_freevars)
    made = types.FunctionType(code, outer.__globals__, name, None, cells)
    copy = saved.get(name)  # the def's defaults were evaluated when it ran: the saved copy's
    made.__defaults__ = getattr(copy, "__defaults__", None)
    made.__kwdefaults__ = getattr(copy, "__kwdefaults__", None)
    made.__qualname__ = info.qualname
    return made
