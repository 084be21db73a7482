"""Today's code, even when edited within a second: your files' bytecode caches checked to the ns."""

from __future__ import annotations

import os
import sys

from .place import environment_entry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any


def check_to_the_nanosecond() -> None:
    """Never take a cached `.pyc` of the user's own files for a newer edit of the same size.

    Python trusts a `.pyc` when its source has the same size and the same mtime in
    whole seconds: an edit saved within the second of the version last imported,
    and of the same size (`-` for `+`, `0` for `1`: the quick edits of a `--watch`
    loop or a restart), would replay the old code. Where that can be (the `.pyc`
    was written within the second its source was saved), the source's mtime is
    given in nanoseconds, which no `.pyc` written before that edit holds: it is
    compiled afresh. The interpreter's own standard library and packages keep
    Python's check.
    """
    from importlib.machinery import SourceFileLoader

    environment = tuple(os.path.join(entry, "") for entry in sys.path
                        if entry and environment_entry(entry))
    original = SourceFileLoader.path_stats

    def path_stats(self: SourceFileLoader, path: str) -> Mapping[str, Any]:
        stats = original(self, path)
        if os.path.abspath(path).startswith(environment) or not _maybe_stale(path, stats):
            return stats
        return {**stats, "mtime": os.stat(path).st_mtime_ns}

    SourceFileLoader.path_stats = path_stats  # type: ignore[method-assign]


def _maybe_stale(source: str, stats: Mapping[str, Any]) -> bool:
    """Whether `source`'s `.pyc` was written in the second its source was saved in."""
    from importlib.util import cache_from_source

    try:
        written = os.stat(cache_from_source(source)).st_mtime
    except (OSError, NotImplementedError, ValueError):
        return False  # none: nothing stale to take
    return bool(written < int(stats["mtime"]) + 1)
