"""Where the store is (the three rules of the design) and `ckpt init`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

STORE_DIRNAME = ".pyckpt"
GITIGNORE = "# Created by ckpt: checkpoints hold data, keep them out of git.\n*\n"
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by ckpt.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def find_store_path() -> Path:
    """The store for this process, by the three rules of the design, in order."""
    explicit = os.environ.get("PYCKPT_DIR")
    if explicit:
        return Path(explicit).expanduser()
    try:
        here = Path.cwd()
    except OSError:
        here = None
    if here is not None:
        for folder in [here, *here.parents]:
            candidate = folder / STORE_DIRNAME
            if candidate.is_dir() and _is_private(candidate):
                return candidate
    return _user_state_dir()


def _is_private(candidate: Path) -> bool:
    """Whether a `.pyckpt` found upward is safe to use: ours, writable by us alone.

    Another user's store could feed us their pickles or read our arguments.
    """
    info = candidate.stat()
    owner_ok = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    if owner_ok and not info.st_mode & 0o022:
        return True
    import warnings

    from .errors import CkptWarning

    why = "belongs to another user" if not owner_ok else "is writable by group or others"
    warnings.warn(f"ckpt: not using {candidate}: it {why}", CkptWarning, stacklevel=2)
    return False


def _user_state_dir() -> Path:
    if sys.platform.startswith("linux"):
        # What platformdirs answers on Linux, without paying for its import.
        base = os.environ.get("XDG_STATE_HOME", "").strip() or os.path.expanduser("~/.local/state")
        return Path(base) / "pyckpt"
    import platformdirs

    return Path(platformdirs.user_state_dir("pyckpt", appauthor=False))


def init_store(directory: Path) -> tuple[Path, bool]:
    """Create `.pyckpt` in `directory` (idempotent); return it and whether it is new."""
    path = directory / STORE_DIRNAME
    created = not path.exists()
    path.mkdir(mode=0o700, exist_ok=True)
    for filename, text in ((".gitignore", GITIGNORE), ("CACHEDIR.TAG", CACHEDIR_TAG)):
        if not (path / filename).exists():
            (path / filename).write_text(text)
    return path, created
