"""What the decorator knows of the function it wraps; worked out on first save.

Imported by `import ckpt`, so everything heavy is imported inside the methods.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: `import ckpt` must stay cheap (see decorator.py)
if TYPE_CHECKING:
    import inspect
    from functools import cached_property as lazy
    from typing import Any, Callable

    from .values import Redaction
else:

    class lazy:
        """`functools.cached_property` without its lock.

        Before Python 3.12 that lock is one for all instances: a fork while another
        thread works out a property leaves the child waiting for it forever. Two
        threads may now both work one out; they get the same answer.
        """

        def __init__(self, function):
            self.function = function
            self.name = function.__name__
            self.__doc__ = function.__doc__

        def __set_name__(self, owner, name):
            self.name = name

        def __get__(self, instance, owner=None):
            if instance is None:
                return self
            value = instance.__dict__[self.name] = self.function(instance)
            return value

DEFAULT_KEEP = 5
_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect


def configured_keep() -> int:
    """Checkpoints kept per name unless a decorator says: `PYCKPT_KEEP`, else 5."""
    try:
        return max(int(os.environ.get("PYCKPT_KEEP", DEFAULT_KEEP)), 1)
    except ValueError:
        return DEFAULT_KEEP


DEFAULT_MAX_BYTES = 2 * 1024**3
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def configured_max_bytes() -> int:
    """The store's size budget: `PYCKPT_MAX_BYTES` (``500M``, ``2G``...), else 2 GiB."""
    text = os.environ.get("PYCKPT_MAX_BYTES", "").strip().upper().removesuffix("B")
    if not text:
        return DEFAULT_MAX_BYTES
    unit = text[-1] if text[-1] in _UNITS else ""
    try:
        return max(int(float(text[: len(text) - len(unit)]) * _UNITS[unit]), 0)
    except ValueError:
        return DEFAULT_MAX_BYTES


def is_coroutine_function(function: Any) -> bool:
    """Whether calling `function` returns a coroutine (an `async def`)."""
    code = getattr(function, "__code__", None)
    return bool(getattr(code, "co_flags", 0) & _CO_COROUTINE)


class Target:
    """What the decorator knows of the function it wraps, worked out on first save."""

    def __init__(self, function: Callable[..., Any], name: str | None, keep: int | None,
                 redact: tuple[str, ...] = ()) -> None:
        self.function = function
        # a callable object (functools.partial, an instance) may have no __qualname__
        self.qualname = str(getattr(function, "__qualname__", type(function).__qualname__))
        self.name = name or self.qualname
        self.keep = keep
        self.redact = redact

    @lazy
    def key(self) -> str:
        """The name's file-name-safe key in the store."""
        from .store import name_key

        return name_key(self.name)

    @lazy
    def signature(self) -> inspect.Signature | None:
        """The function's signature, if it has one."""
        import inspect

        try:
            return inspect.signature(self.function)
        except (TypeError, ValueError):
            return None

    @lazy
    def module_name(self) -> str:
        """The module to import to find the function again (not `__main__` if avoidable)."""
        name = getattr(self.function, "__module__", None) or "__main__"
        module = sys.modules.get(name)
        spec = getattr(module, "__spec__", None)
        if name == "__main__" and spec is not None and spec.name:
            return str(spec.name)  # run with `python -m package.module`
        return name

    @lazy
    def location(self) -> dict[str, Any]:
        """How to find the function again: module, qualname, file, line, source hash."""
        from .source import file_hash, source_hash

        code = getattr(self.function, "__code__", None)
        filename = code.co_filename if code is not None else None
        if filename and not os.path.isabs(filename) and os.path.exists(filename):
            filename = os.path.abspath(filename)
        qualname = self.qualname
        return {
            "module": self.module_name,
            "qualname": qualname,
            "file": filename,
            "line": code.co_firstlineno if code is not None else None,
            "source_hash": source_hash(filename, qualname) if filename else None,
            "file_hash": file_hash(filename) if filename else None,
            "main": getattr(self.function, "__module__", None) == "__main__",
            "coroutine": is_coroutine_function(self.function),
        }

    @lazy
    def module_source(self) -> str | None:
        """The text of the function's source file at first save (up to 1 MiB).

        Kept so that a checkpoint taken elsewhere can show what changed since.
        """
        filename = self.location["file"]
        try:
            if not filename or os.path.getsize(filename) > 1 << 20:
                return None
            with open(filename, encoding="utf-8") as stream:
                return stream.read()
        except (OSError, UnicodeDecodeError):
            return None

    @lazy
    def by_value(self) -> bytes:
        """The function pickled by value, when it cannot be imported by name.

        A closure, a lambda or a function typed into a REPL has no importable
        definition; replay then falls back to this copy.
        """
        import pickle

        from .values import pickle_whole

        if self._importable():
            return pickle.dumps(None)
        return pickle_whole(self.function)  # its buffers in band: a closure's arrays too

    def _importable(self) -> bool:
        if "<locals>" in self.qualname or self.location["main"]:
            return False
        found: Any = sys.modules.get(self.module_name)
        for part in self.qualname.split("."):
            found = getattr(found, part, None)
        while found is not None and found is not self.function:
            found = getattr(found, "__wrapped__", None)
        return found is self.function

    @lazy
    def packages(self) -> dict[str, str]:
        """Versions of the distributions the function's module imported."""
        from . import environment

        module = sys.modules.get(getattr(self.function, "__module__", "") or "")
        return environment.package_versions(module)

    def keep_count(self) -> int:
        """How many checkpoints of this name to keep."""
        return self.keep if self.keep is not None else configured_keep()

    def redaction(self) -> Redaction:
        """The names whose values this save must not store: `redact` and `PYCKPT_REDACT`."""
        return _redaction(self.redact, os.environ.get("PYCKPT_REDACT", ""))


_redactions: dict[tuple[tuple[str, ...], str], Redaction] = {}


def _redaction(redact: tuple[str, ...], environment: str) -> Redaction:
    found = _redactions.get((redact, environment))
    if found is None:
        from .values import Redaction

        from_environment = [part.strip() for part in environment.split(",")]
        found = Redaction([*redact, *from_environment])
        if len(_redactions) > 64:
            _redactions.clear()
        _redactions[(redact, environment)] = found
    return found
