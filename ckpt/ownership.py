"""Whether anyone but this user and root can change what a path names (as git's safe.directory).

An interpreter recorded in a checkpoint, a checkout found above the current
directory, a `.git` read at every save: each is only used when no other user
could have planted or swapped it.
"""

from __future__ import annotations

import os
import stat


def changeable_by_others(path: str) -> str | None:
    """Why another user could change what `path` names, or None when only we and root can.

    Every directory on the way counts, through links too: a path is as safe as
    the least safe directory above it. A sticky directory writable by all (like
    /tmp) is fine above it, since others cannot replace entries they do not own.
    """
    if not hasattr(os, "getuid"):
        return None
    absolute = os.path.abspath(path)
    for candidate in dict.fromkeys((absolute, os.path.realpath(absolute))):
        why = _chain(candidate)
        if why is not None:
            return why
    return None


def _chain(path: str) -> str | None:
    current = path
    while True:
        why = _judge(current, current == path)
        if why is not None:
            return why
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _judge(path: str, last: bool) -> str | None:
    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if info.st_uid not in (0, os.getuid()):
        return f"{path} belongs to another user (uid {info.st_uid})"
    sticky_dir = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
    if info.st_mode & 0o022 and not stat.S_ISLNK(info.st_mode) and (last or not sticky_dir):
        return f"{path} is writable by group or others"
    return None
