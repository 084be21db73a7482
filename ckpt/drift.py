"""What differs between a checkpoint's capture and now: source, Python, packages, git."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def relocated(path: str, recorded_cwd: str | None, here: str | None = None) -> str:
    """Where a recorded path is on this machine.

    When the recorded working directory is gone (a checkpoint from CI, say), a
    path under it is taken relative to `here` (default: the current directory).
    """
    if not recorded_cwd or os.path.isdir(recorded_cwd):
        return path
    root = recorded_cwd.rstrip(os.sep)
    if path != root and not path.startswith(root + os.sep):
        return path
    relative = os.path.relpath(path, root)
    here = here or os.getcwd()
    return here if relative == "." else os.path.join(here, relative)


def is_this_interpreter(python: str) -> bool:
    """Whether `python` is the interpreter running us, in the same environment.

    A virtual environment's python is a link to its base interpreter, so the same
    file is not enough: it must also be found in the same directory (`python3`
    next to `python` is the same environment; another venv's `python` is not).
    """
    ours, theirs = os.path.abspath(sys.executable), os.path.abspath(python)
    if os.path.dirname(ours) != os.path.dirname(theirs):
        return False
    try:
        return os.path.samefile(ours, theirs)
    except OSError:
        return False


def source_changes(location: dict[str, Any], module_source: str | None) -> list[str]:
    """A unified diff of the function between capture and now ([] if unknown or same)."""
    import difflib

    from .source import function_source

    filename, qualname = location.get("file"), location.get("qualname", "")
    if not module_source or not filename:
        return []
    then = function_source(module_source, qualname)
    try:
        with open(filename, encoding="utf-8") as stream:
            now = function_source(stream.read(), qualname)
    except (OSError, UnicodeDecodeError):
        now = None
    if then is None or now is None or then == now:
        return []
    return list(difflib.unified_diff(then.splitlines(), now.splitlines(),
                                     "at capture", "now", lineterm=""))


def source_changed(location: dict[str, Any]) -> bool:
    """Whether the function's source differs from the hash recorded at capture."""
    recorded, filename = location.get("source_hash"), location.get("file")
    if not recorded or not filename:
        return False
    from .source import current_source_hash

    now = current_source_hash(location)
    return now is not None and now != recorded


def environment_changes(metadata: dict[str, Any], location: dict[str, Any]) -> list[str]:
    """One line per difference in Python, platform, package versions and git state."""
    found = []
    from .environment import platform_id, python_version

    then = metadata.get("python")
    if then and then != python_version():
        found.append(f"Python {python_version()} now, {then} at capture")
    if metadata.get("platform") and metadata["platform"] != platform_id():
        found.append(f"platform {platform_id()} now, {metadata['platform']} at capture")
    found += _package_changes(metadata.get("packages") or {})
    found += _git_changes(metadata, location.get("file"))
    return found


def _package_changes(recorded: dict[str, str]) -> list[str]:
    from .environment import installed_version

    changes = []
    for package, then in sorted(recorded.items()):
        now = installed_version(package) or "not installed"
        if now != then:
            changes.append(f"{package} {now} now, {then} at capture")
    return changes


def _git_changes(metadata: dict[str, Any], filename: str | None) -> list[str]:
    from .environment import git_commit, git_state

    then_commit = metadata.get("git_commit")
    if not then_commit:
        return []
    dirty_then = " (with uncommitted changes)" if metadata.get("git_dirty") else ""
    if not filename or not os.path.exists(filename):
        return [f"git commit {then_commit[:12]}{dirty_then} at capture"]
    commit = git_commit(os.path.dirname(filename))  # cheap: read from .git
    if commit == then_commit:
        return [f"git commit {then_commit[:12]} had uncommitted changes at capture"] \
            if dirty_then else []
    now = git_state(filename)  # runs `git status`: only when the commit differs
    if now["git_commit"] == then_commit:
        return [f"git commit {then_commit[:12]} had uncommitted changes at capture"] \
            if dirty_then else []
    dirty_now = " (with uncommitted changes)" if now["git_dirty"] else ""
    return [f"git commit {str(now['git_commit'])[:12]}{dirty_now} now, "
            f"{then_commit[:12]}{dirty_then} at capture"]
