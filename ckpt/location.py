"""Where the store is (the three rules of the design) and `ckpt init`."""

from __future__ import annotations

import os
import sys

STORE_DIRNAME = ".pyckpt"
GITIGNORE = "# Created by ckpt: checkpoints hold data, keep them out of git.\n*\n"
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by ckpt.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def find_store_path() -> str:
    """The store for this process, by the three rules of the design, in order."""
    explicit = os.environ.get("PYCKPT_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    try:
        folder = os.getcwd()
    except OSError:
        return _user_state_dir()
    while True:
        candidate = os.path.join(folder, STORE_DIRNAME)
        if os.path.isdir(candidate) and _is_private(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return _user_state_dir()
        folder = parent


def _is_private(candidate: str) -> bool:
    """Whether a `.pyckpt` found upward is safe to use: ours, writable by us alone.

    Another user's store could feed us their pickles or read our arguments.
    """
    info = os.stat(candidate)
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    if owner_ok and not info.st_mode & 0o022:
        return True
    import warnings

    from .errors import CkptWarning

    why = "belongs to another user" if not owner_ok else "is writable by group or others"
    warnings.warn(f"ckpt: not using {candidate}: it {why}", CkptWarning, stacklevel=2)
    return False


def _user_state_dir() -> str:
    if sys.platform.startswith("linux"):
        # What platformdirs answers on Linux, without paying for its import.
        base = os.environ.get("XDG_STATE_HOME", "").strip() or os.path.expanduser("~/.local/state")
        return os.path.join(base, "pyckpt")
    import platformdirs

    return str(platformdirs.user_state_dir("pyckpt", appauthor=False))


def init_store(directory: str) -> tuple[str, bool]:
    """Create `.pyckpt` in `directory` (idempotent); return it and whether it is new."""
    path = os.path.join(directory, STORE_DIRNAME)
    created = not os.path.exists(path)
    os.makedirs(path, mode=0o700, exist_ok=True)
    for filename, text in ((".gitignore", GITIGNORE), ("CACHEDIR.TAG", CACHEDIR_TAG)):
        marker = os.path.join(path, filename)
        if not os.path.exists(marker):
            with open(marker, "w") as stream:
                stream.write(text)
    return path, created
