"""The secret key that signs and verifies checkpoints: per user, a file, or PYCKPT_KEY."""

from __future__ import annotations

import binascii
import errno
import functools
import os
import re
import stat
import sys

from .errors import CkptError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs every replay's start-up ~5 ms
    from typing import NoReturn

KEY_SIZE = 32
# PYCKPT_KEY: the key as 64 hex digits (`cdip key`), or as base64 (`base64 < keyfile`)
KEY_VARIABLE = "PYCKPT_KEY"
_BASE64_KEY = re.compile(r"[A-Za-z0-9+/]{43}=?")


class Key(bytes):
    """The key's bytes, which never pickle and never show.

    The decorator saves the locals of every frame below a failing function, ckpt's own
    included when the user's code called into ckpt (`ckpt.load` of a damaged checkpoint):
    those hold the key, which would then travel with the checkpoint (`cdip export`, a
    store in S3) and be shown by `cdip info`. As a value that cannot be pickled, it is
    saved as a placeholder that names it, as any unpicklable local is.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<ckpt key: never stored or shown>"

    __str__ = __repr__

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        raise TypeError("the ckpt key is never stored")

    def __copy__(self) -> Key:  # copy.copy and deepcopy would otherwise ask __reduce_ex__
        return self

    def __deepcopy__(self, memo: object) -> Key:
        return self


def key_path() -> str:
    """Where the key lives: `$PYCKPT_KEY_FILE`, else the user's config directory."""
    environ = os.environ
    return _key_path(environ.get("PYCKPT_KEY_FILE"), environ.get("XDG_CONFIG_HOME"),
                     environ.get("HOME"))


@functools.lru_cache(maxsize=8)
def _key_path(explicit: str | None, config_home: str | None, home: str | None) -> str:
    # Cached on everything it depends on: every save asks, and the answer costs
    # tens of microseconds to build.
    if explicit:
        return explicit
    return os.path.join(_user_config_dir(), "key")


def _user_config_dir() -> str:
    if sys.platform.startswith("linux"):
        # What platformdirs answers on Linux, without paying for its import.
        base = os.environ.get("XDG_CONFIG_HOME", "").strip() or os.path.expanduser("~/.config")
        return os.path.join(base, "pyckpt")
    import platformdirs

    return str(platformdirs.user_config_dir("pyckpt", appauthor=False))


def load_key(create: bool = True) -> bytes:
    """Return the key: `$PYCKPT_KEY`, else the key file, created on first use (mode 0600).

    Raises:
        CkptError: PYCKPT_KEY is not a key; the key file is missing (and `create`
            is false), unsafe or unreadable.
    """
    if KEY_VARIABLE in os.environ:  # no local holds it (see Key)
        return key_from_text(os.environ[KEY_VARIABLE])
    path = key_path()
    try:
        return _cached_key(path)
    except FileNotFoundError:
        if not create:
            raise CkptError(
                f"no checkpoint key at {path}: nothing was ever saved as this user",
                hint="checkpoints from elsewhere are adopted with `cdip import`",
            ) from None
    folder = os.path.dirname(path) or "."
    if os.environ.get("PYCKPT_KEY_FILE") and not os.path.isdir(folder):
        # A key named explicitly in a folder that is not there is most likely a typo:
        # a new key made there would sign what no other process can read.
        raise CkptError(f"PYCKPT_KEY_FILE names {path}, but the folder {folder} does not exist",
                        hint="create the folder (a key is made there on first use), or fix "
                             "the path")
    return _create_key(path)


_cache: dict[tuple[str, int, int, int, int, int], bytes] = {}


def _cached_key(path: str) -> bytes:
    """The key, read once per process while the file stays the same (a save is hot)."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        raise
    except OSError:
        return _read_key(path)  # let _read_key say what is wrong
    # Only a key that passed _read_key's checks is cached, under everything they looked at.
    me = os.getuid() if hasattr(os, "getuid") else -1
    identity = (path, info.st_ino, info.st_mtime_ns, info.st_mode, info.st_uid, me)
    key = _cache.get(identity)
    if key is None:
        key = _read_key(path)
        _cache.clear()
        _cache[identity] = key
    return key


def _read_key(path: str) -> bytes:
    try:
        # O_NOFOLLOW: a symlink planted in place of the key is refused, not followed;
        # O_NONBLOCK: a FIFO there is refused (not a regular file) instead of blocking for ever
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise CkptError(
            f"cannot read the checkpoint key {path}: {why}",
            hint="it must be a regular file (not a link) that you own, mode 600",
        ) from exc
    try:
        info = os.fstat(fd)
        _check_key_file(path, info)
        key = os.read(fd, KEY_SIZE + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_SIZE:
        size = len(key)
        del key  # a file of the key and a newline holds it still (see Key)
        raise CkptError(
            f"the checkpoint key {path} is damaged ({size} bytes, expected {KEY_SIZE})",
            hint="delete it to start afresh; checkpoints signed with it will no longer load",
        )
    return Key(key)


def _check_key_file(path: str, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise CkptError(f"the checkpoint key {path} is not a regular file")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise CkptError(
            f"the checkpoint key {path} belongs to another user",
            hint="point PYCKPT_KEY_FILE at a key of your own",
        )
    if info.st_mode & 0o077:
        raise CkptError(
            f"the checkpoint key {path} is readable by others (mode {info.st_mode & 0o777:o})",
            hint=f"run `chmod 600 {path}`",
        )


def _create_key(path: str) -> bytes:
    directory, name = os.path.split(path)
    os.makedirs(directory or ".", mode=0o700, exist_ok=True)
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, os.urandom(KEY_SIZE))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link() refuses to replace: when two processes race, one key wins.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    return _read_key(path)


@functools.lru_cache(maxsize=4)
def key_from_text(text: str) -> bytes:
    """The key PYCKPT_KEY holds: 64 hex digits, or the base64 of the key file's 32 bytes.

    Raises:
        CkptError: anything else (the message never repeats the value: it is a secret).
    """
    stripped = text.strip()
    key = b""
    try:
        if len(stripped) == 2 * KEY_SIZE:
            key = bytes.fromhex(stripped)
        elif _BASE64_KEY.fullmatch(stripped):
            key = binascii.a2b_base64(stripped.rstrip("=") + "=")
    except ValueError:
        pass
    if len(key) == KEY_SIZE:
        return Key(key)
    length = len(stripped)
    del text, stripped, key  # a key with a typo is still most of the key (see Key)
    raise CkptError(
        f"{KEY_VARIABLE} is set but holds no checkpoint key ({length} characters; "
        f"expected {2 * KEY_SIZE} hex digits, or the base64 of a {KEY_SIZE}-byte key file)",
        hint="set it to the output of `cdip key`, or unset it to use PYCKPT_KEY_FILE or "
             "your own key")


def check_key_variable() -> None:
    """Refuse a malformed PYCKPT_KEY up front.

    `cdip` then says what is wrong, rather than list every checkpoint as unverifiable.

    Raises:
        CkptError: PYCKPT_KEY is set and is not a key.
    """
    if KEY_VARIABLE in os.environ:  # no local holds it (see Key)
        key_from_text(os.environ[KEY_VARIABLE])
