"""Finding the replayed function again, from today's source."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from ckpt.checkpoint import unwrap
from ckpt.errors import CkptError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def import_script(path: str) -> ModuleType:
    """Import a script that ran as `__main__` under another name.

    Its ``if __name__ == "__main__":`` block therefore does not run.
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stem.isidentifier() and stem not in sys.modules else "__ckpt_script__"
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CkptError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def import_module(location: dict[str, Any]) -> ModuleType:
    """The function's module, imported anew from today's source.

    A script run as `python -m package.module` is imported by that name, so its
    relative imports work and its main block does not run.
    """
    if location.get("main") and location["module"] == "__main__":
        path = location.get("file") or ""
        if not os.path.isfile(path):
            raise CkptError(
                f"the script {path} that defined {location['qualname']} no longer exists",
                hint="restore it, or replay where it now lives with --cwd DIR",
            )
        return import_script(path)
    return importlib.import_module(location["module"])


def _typed_where(file: str, argv: list[str]) -> str | None:
    """Where a function whose code has no file was typed: a REPL, `-c`, IPython, a notebook."""
    if file == "<stdin>":
        return "in a REPL" if argv[:1] == [""] else "in code read from standard input"
    if file == "<string>" and argv[:1] == ["-c"]:
        return "by `python -c`"
    if file.startswith("<ipython-input-"):
        return "in IPython"
    if file.startswith("<") and file.endswith(">"):
        return f"in {file}"
    # ipykernel names a cell's code /tmp/ipykernel_<pid>/<hash>.py; the file, when its
    # debugger wrote one, is that one cell, not the notebook: never imported
    if os.path.basename(os.path.dirname(file)).startswith("ipykernel_"):
        return "in a notebook cell"
    return None


def find_function(
    location: dict[str, Any], argv: list[str], saved: Callable[[], Callable[..., Any] | None]
) -> tuple[Callable[..., Any], str | None]:
    """The function to replay, and a note to show the user (or None).

    `saved` gives the copy saved by value, only asked for when there is no other:
    for closures, lambdas and functions typed into a REPL, `python -c`, IPython
    or a notebook. `argv` is the recorded one (it tells `python -c` apart).

    Raises:
        CkptError: the function was renamed or deleted since capture.
    """
    qualname = location["qualname"]
    file = location.get("file") or ""
    typed = _typed_where(file, argv) if file else "without a source file"
    if typed or "<locals>" in qualname or "<lambda>" in qualname:
        copy = saved()
        if copy is None:
            raise CkptError(f"{qualname} has no importable definition and no saved copy")
        if typed:
            return copy, (f"note: {qualname} was defined {typed}: replaying the copy saved "
                          "at capture (edits are not picked up)")
        return copy, (f"note: {qualname} has no importable definition; replaying the copy "
                      "saved at capture (edits to it are not picked up)")
    module = _import(location)
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise CkptError(
                f"{location['module']}:{qualname} no longer exists in "
                f"{getattr(module, '__file__', location['module'])}",
                hint="it was renamed or deleted since the checkpoint was taken; "
                     "`cdip info` shows what was captured",
            )
    return unwrap(found), None


def _import(location: dict[str, Any]) -> ModuleType:
    """The function's module, its own import errors shown whole and then explained."""
    try:
        return import_module(location)
    except CkptError:
        raise
    except Exception as exc:
        # Their own error, in their own code: show it whole, then say what it means.
        import traceback

        from ckpt.display import printable

        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        sys.stderr.write(printable("".join(lines), newlines=True))
        raise CkptError(
            f"importing {location.get('file') or location['module']} raised "
            f"{type(exc).__name__}, so {location['qualname']} cannot be replayed",
            hint="fix the error above; a script's top-level code runs when it is imported, "
                 'so keep it under `if __name__ == "__main__":`',
        ) from exc
