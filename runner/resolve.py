"""Finding the replayed function again, from today's source."""

from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

from ckpt.checkpoint import unwrap
from ckpt.errors import CkptError
from ckpt.values import Unpicklable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from importlib.machinery import ModuleSpec
    from typing import Any


class Scripts:
    """The scripts this replay imports, each once: the function's, and any a value names.

    A script is a module that ran as `__main__`: a file, or `python -m package.module`.
    It is imported under another name than `__main__`, so its
    ``if __name__ == "__main__":`` block does not run, and, unless `whole`, neither
    does the rest of its top level that is not a definition (an analysis script's
    pipeline). A saved instance of a class of the script names the class
    (`ckpt.script_classes.script_class`), which is found here, in the module the function
    comes from: the two agree on what the class is, today's.

    Args:
        remap: where a recorded path is in this replay (`Place.remap`).
        whole: run each script's whole top level (``--run-script-top-level``).
    """

    def __init__(self, remap: Callable[[str], str], whole: bool = False) -> None:
        self.remap, self.whole = remap, whole
        self.modules: dict[str, ModuleType] = {}
        self.notes: list[str] = []  # for the banner: what was skipped, what is missing

    def load(self, path: str, qualname: str | None = None) -> ModuleType:
        """The script at `path` (as it is here), imported once, under its file's stem.

        `qualname`, the replayed function, is named in a note when it reads a global
        that only skipped statements assign.
        """
        key = os.path.realpath(path)  # the function's path and a class's, however spelt
        if key not in self.modules:
            import importlib.util

            stem = os.path.splitext(os.path.basename(path))[0]
            name = stem if stem.isidentifier() and stem not in sys.modules else "__ckpt_script__"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None:
                raise CkptError(f"cannot import {path}: it is not a Python file")
            self.modules[key] = self._run(spec, qualname)
        return self.modules[key]

    def load_module(self, name: str, qualname: str | None = None) -> ModuleType:
        """The script run as `python -m name`, imported once by that name.

        So its relative imports work.
        """
        if name not in sys.modules:
            import importlib.util

            spec = importlib.util.find_spec(name)  # its packages are imported first
            if spec is None:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            module = self._run(spec, qualname)
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, module)
        return sys.modules[name]

    def find(self, module: str | None, path: str) -> ModuleType | None:
        """The module that a captured `__main__` (its `-m` name, or its file) replays as."""
        if module:
            return self.load_module(module)
        here = self.remap(path)
        return self.load(here) if os.path.isfile(here) else None

    def _run(self, spec: ModuleSpec, qualname: str | None) -> ModuleType:
        import importlib.util

        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        origin, loader = spec.origin or "", spec.loader
        if loader is None:
            raise CkptError(f"cannot import {spec.name}: it has no loader")
        try:
            if self.whole or not origin.endswith(".py") or not _run_definitions(
                    module, origin, self.notes, qualname):
                loader.exec_module(module)
        except BaseException:
            del sys.modules[spec.name]  # as a failed import leaves it
            raise
        return module


def _run_definitions(module: ModuleType, path: str, notes: list[str],
                     qualname: str | None) -> bool:
    """Run only the script's definitions in `module`; False when that is all it has.

    Then the ordinary import, with its cached bytecode, runs the same statements.
    """
    import ast

    from . import definitions

    with open(path, "rb") as stream:
        plan = definitions.split(stream.read(), path)
    if not plan.skipped:
        return False
    notes.append(definitions.describe_skipped(plan, path))
    unset = definitions.unset_globals(plan, qualname) if qualname else None
    notes += [unset] if unset else []
    code = compile(ast.Module(body=plan.kept, type_ignores=[]), path, "exec", dont_inherit=True)
    exec(code, vars(module))  # noqa: S102 (their own script's definitions: the import we replace)
    return True


def import_target(location: dict[str, Any], scripts: Scripts) -> ModuleType:
    """The function's module, imported anew from today's source.

    A script (run as `__main__`) is imported as `Scripts` says; a module by its name.
    Their own import errors are shown whole, then explained.
    """
    try:
        if location.get("main") and location["module"] == "__main__":
            path = location.get("file") or ""
            if not os.path.isfile(path):
                raise CkptError(
                    f"the script {path} that defined {location['qualname']} no longer exists",
                    hint="restore it, or replay where it now lives with --cwd DIR",
                )
            return scripts.load(path, location["qualname"])
        if location.get("main"):
            return scripts.load_module(location["module"], location["qualname"])
        return importlib.import_module(location["module"])
    except CkptError:
        raise
    except Exception as exc:
        raise _import_failed(location, exc, scripts.whole) from exc


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


def saved_copy_note(location: dict[str, Any], argv: list[str]) -> str | None:
    """Why the function replays from the copy saved at capture, as a note; None if it is not.

    So it does for closures, lambdas and functions typed into a REPL, `python -c`,
    IPython or a notebook. `argv` is the recorded one (it tells `python -c` apart).
    """
    qualname = location["qualname"]
    file = location.get("file") or ""
    typed = _typed_where(file, argv) if file else "without a source file"
    if typed:
        return (f"note: {qualname} was defined {typed}: replaying the copy saved at capture "
                "(edits are not picked up)")
    if "<locals>" in qualname or "<lambda>" in qualname:
        return (f"note: {qualname} has no importable definition; replaying the copy saved "
                "at capture (edits to it are not picked up)")
    return None


def saved_copy(qualname: str, load: Callable[[], object]) -> Callable[..., Any]:
    """The copy of the function saved at capture, from `load`.

    Raises:
        CkptError: it could not be saved, or cannot be loaded (exit 2, not their error).
    """
    try:
        copy = load()
    except Exception as exc:
        raise CkptError(f"{qualname} cannot be replayed: the copy saved at capture cannot be "
                        f"loaded ({type(exc).__name__}: {exc})",
                        hint="something it captured may have been renamed or removed "
                             "since") from exc
    if isinstance(copy, Unpicklable):
        raise CkptError(f"{qualname} cannot be replayed: it has no importable definition, "
                        f"and its copy could not be saved at capture ({copy.error})",
                        hint="define it at the top level of a module, or keep what it "
                             "captures picklable")
    if not callable(copy):
        raise CkptError(f"{qualname} has no importable definition and no saved copy")
    return copy


def find_function(location: dict[str, Any], module: ModuleType,
                  skipped: bool = False) -> Callable[..., Any]:
    """The function `location` names, as `module` defines it today.

    `skipped`: some of the script's top level was skipped (it may have defined it).

    Raises:
        CkptError: the function was renamed or deleted since capture.
    """
    qualname = location["qualname"]
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
        if found is None:
            hint = ("it was renamed or deleted since the checkpoint was taken; "
                    "`cdip info` shows what was captured")
            if skipped:
                hint += ("; or it is defined by a top-level statement that was skipped: "
                         "--run-script-top-level runs them")
            raise CkptError(
                f"{location['module']}:{qualname} no longer exists in "
                f"{getattr(module, '__file__', location['module'])}", hint=hint)
    return unwrap(found)  # type: ignore[no-any-return]


def _import_failed(location: dict[str, Any], exc: Exception, whole: bool) -> CkptError:
    """Their own error, in their own code: shown whole, then said what it means."""
    import traceback

    from ckpt.display import printable

    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    sys.stderr.write(printable("".join(lines), newlines=True))
    if not location.get("main"):
        hint = "fix the error above: the module runs its top level when it is imported"
    elif whole:
        hint = ("fix the error above, or replay without --run-script-top-level (only the "
                "definitions run then); top-level code under "
                '`if __name__ == "__main__":` never runs')
    else:
        hint = ("fix the error above; only the script's imports, definitions and constants "
                "ran (--run-script-top-level runs the rest)")
    return CkptError(
        f"importing {location.get('file') or location['module']} raised "
        f"{type(exc).__name__}, so {location['qualname']} cannot be replayed", hint=hint)
