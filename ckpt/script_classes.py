"""A script's classes, pickled by name so a replay gets them as they are today."""

from __future__ import annotations

import os
import pickle
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any, Callable


def _script() -> tuple[ModuleType, str] | None:
    """`__main__` and its file, when it is a script on disk (not a REPL or a notebook)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not isinstance(path, str) or not path.endswith(".py"):
        return None
    return main, os.path.abspath(path)


_script_pickler: type[pickle.Pickler] | None = None


def pickler() -> type[pickle.Pickler]:
    """The pickler: cloudpickle's; in a script, one that names the script's classes.

    cloudpickle copies a class defined in `__main__` into the pickle, methods and all:
    a replay would run the class as it was at capture, a fix to one of its methods not
    picked up and `isinstance` against today's class False. A class that the script
    defines at its top level is pickled as a call of `script_class` instead, with the
    copy kept only for where the script cannot be found (`ckpt.load()` in a notebook,
    the script gone).
    """
    global _script_pickler
    import cloudpickle

    if _script() is None:
        return cloudpickle.Pickler  # type: ignore[no-any-return]
    if _script_pickler is None:

        class ScriptPickler(cloudpickle.Pickler):  # type: ignore[misc]
            def reducer_override(self, obj: Any) -> Any:
                if isinstance(obj, type) and getattr(obj, "__module__", None) == "__main__":
                    reference = _script_reference(obj)
                    if reference is not None:
                        return reference
                return super().reducer_override(obj)

        _script_pickler = ScriptPickler
    return _script_pickler


def _script_reference(cls: type) -> tuple[Any, ...] | None:
    """How `script_class` finds `cls` again, or None when it is not the script's to name."""
    found = _script()
    if found is None:
        return None
    main, path = found
    if _attribute(main, cls.__qualname__) is not cls:
        return None  # defined in a function, or its name now means something else
    spec = getattr(main, "__spec__", None)
    module = spec.name if spec is not None and spec.name else None  # `python -m pkg.mod`
    return script_class, (module, path, cls.__qualname__, _copy(cls))


def _copy(cls: type) -> bytes | None:
    import cloudpickle

    try:
        return cloudpickle.dumps(cls, protocol=5)  # type: ignore[no-any-return]
    except Exception:  # the class is still found by name where the script is
        return None


def _attribute(module: ModuleType, qualname: str) -> Any:
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


# Set by the replay: finds the module that a captured script is replayed as.
_find_script: Callable[[str | None, str], ModuleType | None] | None = None


def find_scripts_with(finder: Callable[[str | None, str], ModuleType | None]) -> None:
    """Have `script_class` find a script (its `-m` name, its path) with `finder`."""
    global _find_script
    _find_script = finder


def script_class(module: str | None, path: str, qualname: str, copy: bytes | None) -> type:
    """The class `qualname` of the script at `path` that ran as `__main__`, as it is now.

    A saved instance of it is rebuilt as an instance of today's class. The script is
    the one the replay imported (`find_scripts_with`); else, in the process that ran
    it (a `ckpt.load()` there), the live class, untouched; else the copy saved at
    capture.

    Raises:
        LookupError: the replayed script no longer defines the class.
    """
    if _find_script is not None:
        home = _find_script(module, path)
        if home is not None:
            found = _attribute(home, qualname)
            if not isinstance(found, type):
                raise LookupError(f"{os.path.basename(path)} no longer defines the class "
                                  f"{qualname} (renamed or deleted since capture)")
            return found
    live = _script()
    if live is not None and live[1] == path:
        found = _attribute(live[0], qualname)
        if isinstance(found, type):
            return found
    if copy is None:
        raise LookupError(f"the class {qualname} of {path} is not found, and no copy of it "
                          "could be saved at capture")
    from .values import unpickle_value

    cls = unpickle_value(copy, [])
    return cls  # type: ignore[no-any-return]
