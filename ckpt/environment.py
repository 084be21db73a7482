"""Where and how a checkpoint was taken: host, interpreter, packages, git commit."""

from __future__ import annotations

import functools
import getpass
import os
import stat
import sys
import types

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .values import Redaction


@functools.lru_cache(maxsize=1)
def _process_constants() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid()) if hasattr(os, "getuid") else "?"
    import socket

    return {
        "host": socket.gethostname(),
        "user": user,
        "python": python_version(),
        "implementation": sys.implementation.name,
        "executable": sys.executable,
        "platform": platform_id(),
    }


def python_version() -> str:
    """'3.11.7': the running interpreter's version."""
    return ".".join(str(part) for part in sys.version_info[:3])


def platform_id() -> str:
    """'Linux-6.1.0-x86_64': system, release, machine.

    Not `platform.platform()`, which reads the interpreter binary to find the C
    library's version (10 ms on the first save and on every replay).
    """
    if hasattr(os, "uname"):
        uname = os.uname()
        return f"{uname.sysname}-{uname.release}-{uname.machine}"
    import platform

    return f"{platform.system()}-{platform.release()}-{platform.machine()}"


def process_metadata(redaction: Redaction | None = None) -> dict[str, Any]:
    """Metadata of this process now (no environment variables: they hold secrets).

    `sys.argv` is kept with its secret-looking values, and those `redaction` names,
    replaced (see `redact_argv`).
    """
    return {
        **_process_constants(),
        "pid": os.getpid(),
        "cwd": _cwd(),
        "argv": redact_argv(list(sys.argv), redaction),
        "path": list(sys.path),
    }


REDACTED = "<redacted>"
# Option names (``--name=value``, ``--name value``) whose values look secret, after
# `_option_name`: lower case, leading dashes gone, "-" read as "_".
SECRET_OPTIONS = ("*password", "*passwd", "*token", "*secret", "*api_key", "*apikey")
# Variables set on the command line (``NAME=value``, as `make` and `env` take them).
SECRET_VARIABLES = ("*_key", "*_token", "*_secret", "*password*", "*passwd*")


def redact_argv(argv: list[str], redaction: Redaction | None = None) -> list[str]:
    """`argv` with secret-looking values replaced by ``<redacted>``.

    ``--password=x``, ``--password x``, ``--db-password``, ``--token``, ``--secret``,
    ``--api-key`` (and any option whose name ends so); ``NAME=x`` where NAME ends
    in ``_KEY``, ``_TOKEN`` or ``_SECRET`` or holds ``PASSWORD``; and options or
    variables named by `redaction` (``--db-url`` for ``db_url``).
    """
    kept, index = list(argv), 1
    while index < len(argv):
        name, equals, _ = argv[index].partition("=")
        option = name.startswith("--")
        if (option or equals) and name.strip("-") and _secret(name, option, redaction):
            if equals:
                kept[index] = f"{name}={REDACTED}"
            elif index + 1 < len(argv) and not argv[index + 1].startswith("--"):
                index += 1
                kept[index] = REDACTED
        index += 1
    return kept


def _secret(name: str, option: bool, redaction: Redaction | None) -> bool:
    import fnmatch

    normalized = name.lstrip("-").lower().replace("-", "_")
    patterns = SECRET_OPTIONS if option else SECRET_OPTIONS + SECRET_VARIABLES
    if any(fnmatch.fnmatchcase(normalized, pattern) for pattern in patterns):
        return True
    return redaction is not None and (redaction.covers(name.lstrip("-"))
                                      or redaction.covers(name.lstrip("-").replace("-", "_")))


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the working directory was deleted
        return ""


@functools.cache
def _distributions() -> dict[str, list[str]]:
    from .decorator import forks_held

    with forks_held:  # imports importlib.metadata, and what it needs on first use
        from importlib import metadata

        mapping = getattr(metadata, "packages_distributions", None)  # Python >= 3.10
        return dict(mapping()) if mapping is not None else {}


def _version(distribution: str) -> str | None:
    from .decorator import forks_held

    try:
        with forks_held:  # the first lookup imports the email parser
            from importlib import metadata

            return metadata.version(distribution)
    except Exception:  # a broken dist-info must not break a save
        return None


def installed_version(top: str) -> str | None:
    """The version of top-level package `top`: its `__version__`, else its distribution's.

    `__version__` of an imported package costs nothing; the package metadata
    is searched only for a package without one.
    """
    version = getattr(sys.modules.get(top), "__version__", None)
    if isinstance(version, str):
        return version
    for distribution in [top, *_distributions().get(top, [])]:
        found = _version(distribution)
        if found:
            return found
    return None


def package_versions(module: types.ModuleType | None) -> dict[str, str]:
    """Versions of the top-level packages `module` imported (standard library left out)."""
    if module is None:
        return {}
    tops = set()
    for value in list(vars(module).values()):
        name = value.__name__ if isinstance(value, types.ModuleType) else None
        name = name or getattr(value, "__module__", None)
        if isinstance(name, str) and name:
            tops.add(name.partition(".")[0])
    own = getattr(module, "__name__", "").partition(".")[0]
    tops.discard(own)
    tops -= set(getattr(sys, "stdlib_module_names", ())) | set(sys.builtin_module_names)
    versions = {}
    for top in sorted(tops):
        version = installed_version(top)
        if version:
            versions[top] = version
    return versions


@functools.lru_cache(maxsize=64)
def git_state(filename: str) -> dict[str, Any]:
    """The commit of the work tree holding `filename`, and whether that file had changes.

    Worked out once per file and process. Only the one file is asked about: a
    `git status` of a whole large repository could stall the user's first save.
    """
    directory = os.path.dirname(filename)
    commit = git_commit(directory)
    dirty = _git_dirty(directory, os.path.basename(filename)) if commit else None
    return {"git_commit": commit, "git_dirty": dirty}


def _git_dirty(directory: str, name: str) -> bool | None:
    from .decorator import forks_held

    with forks_held:
        import shutil
        import subprocess

    git = shutil.which("git")
    if git is None:
        return None
    try:
        status = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=no", "--", name], cwd=directory,
            capture_output=True, text=True, timeout=2, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(status.stdout.strip()) if status.returncode == 0 else None


def git_commit(directory: str) -> str | None:
    """The commit checked out in the git work tree holding `directory`, if any.

    Read from `.git` directly: running git would cost a process per save.
    """
    folder = os.path.abspath(directory)
    while True:
        dotgit = os.path.join(folder, ".git")
        if os.path.isfile(dotgit):  # a worktree or submodule: "gitdir: <path>"
            text = _read_text(dotgit) or ""
            if not text.startswith("gitdir:"):
                return None
            dotgit = os.path.realpath(os.path.join(folder, text.partition(":")[2].strip()))
        if os.path.isdir(dotgit):
            return _resolve_head(dotgit) if _ours(dotgit) else None
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _ours(dotgit: str) -> bool:
    """Whether only we (and root) can change this `.git`, as git's safe.directory asks.

    Another user's `.git` above a script (in a shared /tmp, say) could hold a FIFO
    that would block the save, or anything else: it is not read.
    """
    from .ownership import changeable_by_others

    return changeable_by_others(dotgit) is None


_MAX_GIT_FILE = 16 << 20  # packed-refs of a large repository; HEAD is a line


def _read_text(path: str) -> str | None:
    """A small regular file's stripped text, or None when it cannot be read.

    Never blocks: a FIFO or a device named like a git file is not opened for reading.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, _MAX_GIT_FILE).decode(errors="replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)


def _resolve_head(gitdir: str) -> str | None:
    head = _read_text(os.path.join(gitdir, "HEAD"))
    if head is None:
        return None
    if not head.startswith("ref:"):
        return head or None
    ref = head.partition(":")[2].strip()
    common = gitdir
    commondir = _read_text(os.path.join(gitdir, "commondir"))
    if commondir is not None:
        common = os.path.realpath(os.path.join(gitdir, commondir))
    for base in (gitdir, common):
        sha = _read_text(os.path.join(base, ref))
        if sha is not None:
            return sha
    packed = _read_text(os.path.join(common, "packed-refs"))
    if packed is None:
        return None
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref:
            return sha
    return None  # a branch with no commits yet
