"""`ckpt run script.py ARGS`, `ckpt run -m module ARGS`: a program run unchanged, its crash saved.

The program runs in this interpreter exactly as ``python script.py ARGS`` or
``python -m module ARGS`` would run it: its own `__main__` module, `sys.argv`,
`sys.path[0]` (the script's directory, or the current one for ``-m``), its exit
status, standard streams and signal handlers untouched. On an exception it does not
handle, every frame of the user's own code on the stack is saved as a checkpoint
(`stack.save_frames`), the traceback is printed as Python prints it (by
`sys.excepthook`, theirs if they set one, from their code down), and Python ends the
process as it would have (status 1; for Ctrl-C, killed by SIGINT). unittest's
failures are saved too (`excepthook.watch_unittest`).

`cdip run NAME` replays instead: `run` is followed by a script when its first
argument (after ``--dir PATH``) ends in ``.py``, by a module when that is ``-m
MODULE`` and MODULE is not a replay mode (``-m`` is ``--mode`` in a replay). After
``--`` comes a name: ``cdip run -- step.py`` replays a checkpoint named so.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import CodeType, ModuleType, TracebackType

# The replay modes, which `-m` names in `cdip run NAME -m MODE` (commands.MODES; not
# imported from there: that would import argparse before the user's program runs).
REPLAY_MODES = ("break", "until-error", "shell", "locals", "run")

# `--help`: of the program (`commands.build_parser`), and of its `run` subcommand.
MAIN_EPILOG = ("`%(prog)s run script.py ARGS` and `%(prog)s run -m MODULE ARGS` run a program "
               "unchanged and save its crash, no decorator needed: see `%(prog)s run --help`.")
RUN_EPILOG = (
    "`%(prog)s [--dir PATH] script.py [ARGS...]` and `%(prog)s [--dir PATH] -m MODULE "
    "[ARGS...]` run a program instead, unchanged, as python would (its sys.argv, __main__, "
    "sys.path[0], exit status, streams and signals); if it ends with an exception it does "
    "not handle, each function of yours on the stack is saved as a checkpoint, named by its "
    "qualified name, with its parameters' values at the error as its arguments (module-level "
    "code, libraries and the standard library are not saved); unittest's and pytest's "
    "failing tests too. "
    "`run` runs a program when its first argument ends in .py, or is -m MODULE where MODULE "
    "is not a mode (break, until-error, shell, locals, run): otherwise it replays, and "
    "after -- comes a name (`%(prog)s -- step.py` replays a checkpoint named so).")


class Program:
    """What `ckpt run` is asked to run: a script's path or a module's name, and its arguments."""

    def __init__(self, script: str | None, module: str | None, arguments: list[str],
                 store: str | None) -> None:
        self.script, self.module, self.arguments, self.store = script, module, arguments, store


def requested(arguments: Sequence[str]) -> Program | None:
    """The program `ckpt run ...` asks to run, or None when it asks for a replay.

    ``run [--dir PATH] script.py ARGS`` and ``run [--dir PATH] -m MODULE ARGS``
    (also ``-mMODULE``) with MODULE not a replay mode; everything after the script
    or module is the program's own.
    """
    if arguments[:1] != ["run"]:
        return None
    rest, store = list(arguments[1:]), None
    while rest and ((rest[0] == "--dir" and len(rest) > 1) or rest[0].startswith("--dir=")):
        store = rest[0].partition("=")[2] if "=" in rest[0] else rest.pop(1)
        rest.pop(0)
    if not rest:
        return None
    first = rest[0]
    if first.endswith(".py") and not first.startswith("-"):
        return Program(first, None, rest[1:], store)
    if first == "-m" and len(rest) > 1 and rest[1] not in REPLAY_MODES:
        return Program(None, rest[1], rest[2:], store)
    if first.startswith("-m") and not first.startswith("--") and first[2:] not in (
            "", *REPLAY_MODES):
        return Program(None, first[2:], rest[1:], store)
    return None


def prepare(program: Program, prog: str) -> tuple[CodeType, ModuleType]:
    """Ready `program` to run: its code and its fresh `__main__`; `sys.argv` and `sys.path` set.

    As Python sets them; a module's packages are imported here, as ``python -m``
    imports them before the module runs.

    Raises:
        CkptError: no such script or module (exit 2).
    """
    if program.store is not None:  # for its decorated functions too, and their subprocesses
        os.environ["PYCKPT_DIR"] = os.path.abspath(program.store)
    if program.module in ("pytest", "py.test"):  # pytest catches failures: its plugin saves them
        os.environ.setdefault("PYCKPT_PYTEST", "1")
    from .errors import CkptError
    from .excepthook import watch_threads, watch_unittest

    watch_unittest()
    watch_threads()
    try:
        return _load(program, prog)
    except (CkptError, SystemExit):
        raise
    except BaseException as exc:  # theirs: a syntax error, a package's __init__ that raised
        _uncaught(exc)
        raise


def execute(code: CodeType, main: ModuleType) -> int:
    """Run the program's `code` as `__main__`; return 0 when it ends normally.

    Its `SystemExit` passes through (its exit status); an exception it does not
    handle is saved, shown as Python shows it and raised again, for Python to end
    the process with (see `_uncaught`).
    """
    sys.modules["__main__"] = main
    try:
        exec(code, vars(main))  # noqa: S102 (the program the user asked to run)
    except SystemExit:
        raise
    except BaseException as exc:
        _uncaught(exc)
        raise
    return 0


def _load(program: Program, prog: str) -> tuple[CodeType, ModuleType]:
    import builtins
    import types

    main = types.ModuleType("__main__")
    vars(main).update(__builtins__=builtins, __annotations__={})  # as Python's own __main__
    if program.script is not None:
        return _load_script(program.script, program.arguments, main, prog), main
    return _load_module(program.module or "", program.arguments, main), main


# python -P (PYTHONSAFEPATH): Python puts no directory in front of sys.path, nor do we.
_SAFE_PATH = getattr(sys.flags, "safe_path", False)


def _load_script(script: str, arguments: list[str], main: ModuleType, prog: str) -> CodeType:
    """As `python script.py ARGS`: argv, the script's real directory first on the path."""
    from importlib.machinery import SourceFileLoader

    path = os.path.abspath(script)
    try:
        with open(path, "rb") as stream:
            source = stream.read()
    except OSError as exc:
        raise _no_script(script, exc, prog) from exc
    sys.argv[:] = [script, *arguments]
    if not _SAFE_PATH:
        sys.path[0] = os.path.dirname(os.path.realpath(path))
    vars(main).update(__file__=path, __cached__=None, __package__=None, __spec__=None,
                      __loader__=SourceFileLoader("__main__", path))
    try:
        return compile(source, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):  # ValueError: a null byte, before Python 3.11.4
        unreadable = _unreadable(source, path)
        if unreadable is None:
            raise
        raise unreadable from None


_COOKIE = br"^[ \t\f]*#.*?coding[:=]"  # PEP 263's encoding declaration


def _unreadable(source: bytes, path: str) -> SyntaxError | None:
    """The error Python gives a script it cannot read as source, in Python's words; or None.

    Python reads a script's file itself: a null byte, or a file that is not UTF-8 and
    declares no encoding, is a SyntaxError that `compile` of its bytes words otherwise
    (and shows the line undecoded).
    """
    import re

    null = source.find(b"\0")
    if null >= 0:
        start = source.rfind(b"\n", 0, null) + 1
        text = source[start:null].decode("utf-8", "replace")
        return SyntaxError("source code cannot contain null bytes",
                           (path, source.count(b"\n", 0, null) + 1, 0, text))
    if source.startswith(b"\xef\xbb\xbf") or any(
            re.match(_COOKIE, line) for line in source.split(b"\n", 2)[:2]):
        return None
    try:
        source.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = source.count(b"\n", 0, exc.start) + 1
        return SyntaxError(
            f"Non-UTF-8 code starting with '\\x{source[exc.start]:02x}' in file {path} on "
            f"line {line}, but no encoding declared; see https://peps.python.org/pep-0263/ "
            "for details")
    return None


def _load_module(module: str, arguments: list[str], main: ModuleType) -> CodeType:
    """As `python -m module ARGS`: the current directory first on the path, then its packages."""
    sys.argv[:] = ["-m", *arguments]  # while its packages import, as python -m
    if not _SAFE_PATH:
        sys.path[0] = os.getcwd()
    spec, code = _module_details(module)
    sys.argv[0] = spec.origin or module
    vars(main).update(__file__=spec.origin, __cached__=spec.cached, __loader__=spec.loader,
                      __package__=spec.parent, __spec__=spec)
    return code


def _no_script(script: str, exc: OSError, prog: str) -> Exception:
    from .errors import CkptError

    reason = exc.strerror or str(exc)
    return CkptError(f"cannot run {script}: {reason}",
                     hint=f"to replay a checkpoint named {script}: `{prog} run -- {script}`")


class _NoModule(ImportError):
    """What `runpy` raises for a module it cannot run (raised as ours, to tell it apart)."""


def _module_details(name: str) -> tuple[ModuleSpec, CodeType]:
    """The spec and code `python -m name` runs (a package's `__main__`), as runpy finds them."""
    import runpy

    from .errors import CkptError

    try:
        # pdb's `_ModuleTarget` finds its module with the same (private, long-stable) helper
        _, spec, code = runpy._get_module_details(name, _NoModule)  # type: ignore[attr-defined]
    except _NoModule as exc:
        raise CkptError(f"cannot run -m {name}: {exc}",
                        hint="-m takes a module's name, as `python -m` does; after -m, "
                             f"{', '.join(REPLAY_MODES)} are replay modes") from exc
    return spec, code


def _uncaught(exc: BaseException) -> None:
    """Save the frames of an exception the program did not handle, and show it as Python would.

    The traceback starts at the program's own code (ours is cut off), is shown by
    `sys.excepthook` (the program's own, if it set one), and is followed by what was
    saved. Python then shows nothing more: it only ends the process, as it would
    have ended `python script.py` (exit status 1; SIGINT for a KeyboardInterrupt).
    """
    # None for a syntax error: Python shows no traceback for it either
    exc.__traceback__ = _theirs(exc.__traceback__)
    from .excepthook import report_tests
    from .stack import print_report, save_frames

    saved = save_frames(exc) if isinstance(exc, Exception) else []
    _show(exc)
    print_report(saved)
    report_tests()
    sys.excepthook = _shown


def _show(exc: BaseException) -> None:
    """Show `exc` by `sys.excepthook`, as Python does at exit, even when that hook fails.

    Python then shows the hook's error and the original one; a `SystemExit` the hook
    raises ends the process with its status, as it does in Python.
    """
    hook = sys.excepthook
    # the program's install_excepthook(): the hook it wraps, or the error is saved twice
    hook = getattr(hook, "__ckpt_previous__", None) or hook
    try:
        hook(type(exc), exc, exc.__traceback__)
    except SystemExit:
        raise
    except BaseException as failure:
        if failure.__context__ is exc:  # Python calls the hook outside any handler
            failure.__context__ = None
        failure.__traceback__ = _theirs(failure.__traceback__)  # the hook's, as Python shows
        if sys.stderr is not None:
            print("Error in sys.excepthook:", file=sys.stderr)
            sys.__excepthook__(type(failure), failure, failure.__traceback__)
            print("\nOriginal exception was:", file=sys.stderr)
            sys.__excepthook__(type(exc), exc, exc.__traceback__)


def _theirs(tb: TracebackType | None) -> TracebackType | None:
    """`tb` from the first frame that is not this module's: ours are cut off."""
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    return tb


def _shown(*exc_info: object) -> None:
    """The exception was shown already: Python, ending the process, shows nothing more."""


if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
