"""Which frames are the user's own: where a post-mortem opens, which saved locals are shown."""

from __future__ import annotations

import os

import ckpt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType, TracebackType

# The standard library, and ckpt with its runner: code the user did not write.
_OURS = tuple(os.path.dirname(os.path.abspath(f)) + os.sep
              for f in (os.__file__, ckpt.__file__, __file__))


_CHAIN_LIMIT = 10  # exceptions followed back through __cause__ and __context__


def is_library(filename: str) -> bool:
    """Whether `filename` is the standard library's, an installed package's, or ours.

    Code typed into a REPL or a notebook (``<stdin>``, ``<ipython-input-1-…>``) is
    the user's; Python's frozen modules are not.
    """
    if filename.startswith("<"):
        return filename.startswith("<frozen ")
    path = os.path.abspath(filename)
    parts = path.split(os.sep)
    return "site-packages" in parts or "dist-packages" in parts or path.startswith(_OURS)


def innermost_user(filenames: Sequence[str]) -> int:
    """The index of the innermost of `filenames` that is the user's (the last if none is)."""
    for index in range(len(filenames) - 1, -1, -1):
        if not is_library(filenames[index]):
            return index
    return len(filenames) - 1


def reaching_user_code(exc: BaseException) -> BaseException:
    """`exc`, or the exception it interrupted when only that one's traceback reaches user code.

    Ctrl-C in an `async def` surfaces as a KeyboardInterrupt raised by asyncio while
    it handles the CancelledError whose traceback holds the user's frames.
    """
    current: BaseException | None = exc
    for _ in range(_CHAIN_LIMIT):
        if current is None:
            break
        if any(not is_library(frame.f_code.co_filename)
               for frame, _ in traceback_frames(current.__traceback__)):
            return current
        current = current.__cause__ or current.__context__
    return exc


def traceback_frames(tb: TracebackType | None) -> list[tuple[FrameType, int]]:
    """The frames of a traceback, outermost first, with the line each was at."""
    found = []
    while tb is not None:
        found.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    return found


def where(frames: list[tuple[FrameType, int]], start: int) -> str:
    """Says at which frame a post-mortem opens, and what lies below it."""
    frame, line = frames[start]
    code = frame.f_code
    at = f"post-mortem at {code.co_name} ({code.co_filename}:{line})"
    below = len(frames) - 1 - start
    if below == 0:
        return f"{at}, where it was raised" if not is_library(code.co_filename) else \
            f"{at}, where it was raised (no frame of your code is on the traceback)"
    frames_word = "frame" if below == 1 else f"{below} frames"
    return (f"{at}, the innermost frame of your code; `down` reaches the {frames_word} "
            "below it, in the standard library or installed packages")
