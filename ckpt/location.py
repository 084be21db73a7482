"""Where the store is (the three rules of the design), whether it is safe, and `ckpt init`."""

from __future__ import annotations

import os
import stat
import sys

from .errors import CkptError

STORE_DIRNAME = ".pyckpt"
GITIGNORE = "# Created by ckpt: checkpoints hold data, keep them out of git.\n*\n"
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by ckpt.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def find_store_path(explicit: str | None = None) -> str:
    """The store for this process, by the three rules of the design, in order.

    Called at every save, so it costs one `lstat` of the store (two for a link):
    the check below is a few comparisons on that result, so nothing is cached.

    Args:
        explicit: a store named on the command line (`--dir`); it comes first.

    Returns:
        An absolute path (the replay child runs in another working directory).

    Raises:
        CkptError: the store named (`explicit`, `PYCKPT_DIR`) or the user's default
            one belongs to another user or can be written by others. An unsafe
            `.pyckpt` found upward is skipped with a warning instead: someone else's
            directory above ours must not be able to turn our checkpoints off.
    """
    named = explicit or os.environ.get("PYCKPT_DIR")
    if named:
        from .backend import is_url

        if named.startswith("file://"):
            named = named[len("file://"):] or "/"
        elif is_url(named):
            # a bucket is not ours by its mode bits: what protects it is the key (a
            # checkpoint not signed under it is never replayed) and the bucket's own
            # access policy (IAM), which decides who may list, read or delete
            return named.rstrip("/")
        return _checked(_absolute(os.path.expanduser(named)))
    found = _pyckpt_upward()
    return found if found is not None else _checked(_user_state_dir())


def local_store_path() -> str:
    """The store this user would have without PYCKPT_DIR: a `.pyckpt` upward, else theirs."""
    found = _pyckpt_upward()
    return found if found is not None else _checked(_user_state_dir())


def _absolute(path: str) -> str:
    if os.path.isabs(path):
        return path  # as given: not even normalised, so it is the path the user wrote
    try:
        return os.path.abspath(path)
    except OSError:
        return path  # the working directory is gone: the store will say it cannot be read


def _pyckpt_upward() -> str | None:
    """The nearest safe `.pyckpt` from the working directory upward, if any."""
    try:
        folder = os.getcwd()
    except OSError:
        return None
    while True:
        candidate = os.path.join(folder, STORE_DIRNAME)
        info = _lstat(candidate)
        if info is not None:
            unsafe = _unsafe(candidate, info)
            if unsafe is None:
                return candidate
            _warn_skipped(candidate, *unsafe)
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _warn_skipped(candidate: str, problem: str, fix: str) -> None:
    import warnings

    from .errors import CkptWarning

    warnings.warn(f"ckpt: not using {candidate}: {problem} ({fix})", CkptWarning, stacklevel=4)


def _lstat(path: str) -> os.stat_result | None:
    """`os.lstat`, or None when nothing is there (or we may not look)."""
    try:
        return os.lstat(path)
    except OSError:
        return None


def _checked(path: str) -> str:
    """`path`, unless something unsafe is there (a missing store is fine: it is created 0700)."""
    info = _lstat(path)
    unsafe = None if info is None else _unsafe(path, info)
    if unsafe is not None:
        problem, fix = unsafe
        raise CkptError(f"not using the store {path}: {problem}", hint=fix)
    return path


def _unsafe(path: str, info: os.stat_result) -> tuple[str, str] | None:
    """Why the thing at `path` (`info` from lstat) must not be a store, and the fix; or None.

    A store must be ours alone: a directory others can write to lets them delete,
    swap or replay our checkpoints, and read the names of our functions. A link is
    judged twice: its target, and the link itself, since whoever owns the link can
    point it at another directory of ours tomorrow (`cdip gc` deletes files there).
    """
    if stat.S_ISLNK(info.st_mode):
        if not _ours(info):
            return (f"it is a symbolic link owned by another user (uid {info.st_uid})",
                    "replace it with a directory of your own")
        try:
            info = os.stat(path)
        except OSError:
            return "it is a symbolic link to nothing", "remove it or point it at a directory"
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a directory", "point PYCKPT_DIR or --dir at a directory"
    if not _ours(info):
        return (f"it belongs to another user (uid {info.st_uid})",
                "a store must be yours alone: use your own (PYCKPT_DIR, --dir), "
                "or have it `chown`ed to you")
    if info.st_mode & 0o022:
        return (f"it is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})",
                f"a store must be yours alone: run `chmod 700 {path}`")
    return None


def _ours(info: os.stat_result) -> bool:
    # Where there are no user ids (Windows), ownership cannot be judged.
    return not hasattr(os, "getuid") or info.st_uid == os.getuid()


def user_cache_dir() -> str:
    """The user's cache folder for ckpt (what a remote store's copies live in)."""
    if sys.platform.startswith("linux"):
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.expanduser("~/.cache")
        return _absolute(os.path.join(base, "pyckpt"))
    import platformdirs

    return str(platformdirs.user_cache_dir("pyckpt", appauthor=False))


def _user_state_dir() -> str:
    if sys.platform.startswith("linux"):
        # What platformdirs answers on Linux, without paying for its import.
        base = os.environ.get("XDG_STATE_HOME", "").strip() or os.path.expanduser("~/.local/state")
        return _absolute(os.path.join(base, "pyckpt"))
    import platformdirs

    return str(platformdirs.user_state_dir("pyckpt", appauthor=False))


def init_store(directory: str) -> tuple[str, bool]:
    """Create `.pyckpt` in `directory` (idempotent); return it and whether it is new.

    Raises:
        CkptError: a `.pyckpt` is already there that is not safe to use.
    """
    path = os.path.join(directory, STORE_DIRNAME)
    created = _lstat(path) is None
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError:
        pass  # not a directory: _checked says what it is
    # Checked after creating: another user's directory made meanwhile is found too.
    _checked(path)
    for filename, text in ((".gitignore", GITIGNORE), ("CACHEDIR.TAG", CACHEDIR_TAG)):
        marker = os.path.join(path, filename)
        if not os.path.exists(marker):
            with open(marker, "w") as stream:
                stream.write(text)
    return path, created
