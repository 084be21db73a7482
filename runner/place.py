"""Where a replay runs: whose checkout's code, which working directory, which `sys.path`."""

from __future__ import annotations

import collections
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .options import Options


class Place(collections.namedtuple("Place", "cwd moved why")):
    """The working directory of a replay, and why it is that one.

    Attributes:
        cwd: the directory to run in.
        moved: (recorded, here): recorded paths under the first directory are taken
            from under the second; None when recorded paths stand as they are.
        why: said in the banner, after the directory.
    """

    __slots__ = ()
    cwd: str
    moved: tuple[str, str] | None
    why: str

    def remap(self, path: str) -> str:
        """Where the recorded `path` is in this replay."""
        if self.moved is None:
            return path
        then, now = self.moved
        if path == then:
            return now
        if path.startswith(then.rstrip(os.sep) + os.sep):
            return os.path.join(now, path[len(then.rstrip(os.sep)) + 1 :])
        return path


def git_root(directory: str) -> str | None:
    """The checkout holding `directory`: the nearest with a `.git` (a worktree's is a file).

    None when that checkout could be another user's doing (as git's safe.directory
    refuses it): a `.git` planted in a shared directory above would otherwise
    choose whose code the replay runs.
    """
    from ckpt.ownership import changeable_by_others

    current = os.path.abspath(directory)
    while True:
        dotgit = os.path.join(current, ".git")
        if os.path.lexists(dotgit):
            unsafe = changeable_by_others(dotgit) or changeable_by_others(current)
            return None if unsafe else current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def other_checkout(file: str | None, here: str) -> tuple[str, str] | None:
    """(the recorded checkout, `here`'s) when `here`'s checkout is another holding `file`.

    Another clone or worktree holds it at the same path relative to its root. When
    the recorded checkout is not on this machine (a checkpoint from CI), the
    longest tail of the recorded path found in `here`'s checkout tells its root.
    """
    now = git_root(here)
    if now is None or not file or not os.path.isabs(file):
        return None
    if os.path.exists(file):
        then = git_root(os.path.dirname(file))
        if then is None or then == now:
            return None
        relative = os.path.relpath(file, then)
        return (then, now) if os.path.isfile(os.path.join(now, relative)) else None
    parts = file.split(os.sep)
    for start in range(2, len(parts)):  # from 2: the recorded root is never "/" itself
        if os.path.isfile(os.path.join(now, *parts[start:])):
            return os.sep.join(parts[:start]), now
    return None


def choose(recorded_cwd: str, file: str | None, here: str | None,
           override: str | None) -> Place:
    """Where to replay: `--cwd`; else the checkout `cdip` runs in; else the recorded directory."""
    if override:
        moved = other_checkout(file, override)
        if moved is None and recorded_cwd and recorded_cwd != override:
            moved = (recorded_cwd, override)
        return Place(override, moved, "--cwd")
    moved = other_checkout(file, here) if here else None
    if moved is not None:
        cwd = Place("", moved, "").remap(recorded_cwd) if recorded_cwd else moved[1]
        return Place(cwd if os.path.isdir(cwd) else moved[1], moved,
                     f"the checkout you are in; captured in {moved[0]}")
    if not recorded_cwd or os.path.isdir(recorded_cwd) or here is None:
        return Place(recorded_cwd or here or os.sep, None, "recorded at capture")
    return Place(here, (recorded_cwd, here), f"the recorded working directory {recorded_cwd} "
                 "does not exist here; paths under it are taken from here")


def environment_entry(path: str) -> bool:
    """Whether a `sys.path` entry is an interpreter's own: its standard library or packages."""
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    name = parts[-1]
    if name == "lib-dynload":
        return True
    version = name.removesuffix(".zip")[len("python"):].replace(".", "")
    return (name.startswith("python") and version.isdigit() and len(parts) > 1
            and parts[-2] in ("lib", "lib64"))


def _same_interpreter(recorded: object) -> bool:
    from ckpt.drift import is_this_interpreter

    return isinstance(recorded, str) and bool(recorded) and is_this_interpreter(recorded)


def restore(metadata: dict[str, Any], file: str | None, options: Options) -> Place:
    """Enter the replay's working directory; restore `sys.path` and `sys.argv` for it."""
    from ckpt.errors import CkptError

    try:
        here: str | None = os.getcwd()
    except OSError:
        here = None  # the directory cdip runs in was deleted
    recorded_cwd = metadata.get("cwd")
    place = choose(recorded_cwd if isinstance(recorded_cwd, str) else "", file, here,
                   options.cwd)
    try:
        os.chdir(place.cwd)
    except OSError as exc:
        raise CkptError(f"cannot replay in {place.cwd}: {exc.strerror}",
                        hint="pass --cwd DIR to replay in another directory") from exc
    _restore_path(metadata, place)
    argv = metadata.get("argv")
    if isinstance(argv, list) and argv:
        sys.argv[:] = [place.remap(str(a)) for a in argv]
    return place


def _restore_path(metadata: dict[str, Any], place: Place) -> None:
    """The recorded `sys.path` first, its paths moved with the checkout; then ours.

    Replayed by another interpreter than the recorded one, the standard library and
    packages are that interpreter's own: the recorded environment's entries are left out.
    """
    from ckpt.display import printable

    recorded = [place.remap(p) for p in metadata.get("path", []) if isinstance(p, str)]
    if not _same_interpreter(metadata.get("executable")):
        theirs = [p for p in recorded if environment_entry(p)]
        recorded = [p for p in recorded if not environment_entry(p)]
        if theirs:
            print(f"note: replaying with {printable(sys.executable)}, not the one recorded: "
                  f"its own standard library and packages are used, not the {len(theirs)} "
                  "recorded sys.path entries of those", file=sys.stderr)
    # An entry missing for this interpreter too (python311.zip) is no news.
    missing = [p for p in recorded if p and not os.path.exists(p) and p not in sys.path]
    if missing:
        what = "entry no longer exists" if len(missing) == 1 else "entries no longer exist"
        print(f"note: {len(missing)} recorded sys.path {what}: "
              f"{printable(', '.join(missing[:3]))}", file=sys.stderr)
    # ckpt stays importable: this interpreter's own entries follow
    ours = [p for p in sys.path if p not in recorded and p != ""]
    sys.path[:] = recorded + ours
