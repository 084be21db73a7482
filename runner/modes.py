"""The replay modes: break, until-error, shell, locals and run."""

from __future__ import annotations

import os
import sys
from collections.abc import Coroutine
from types import CodeType, TracebackType

from ckpt.checkpoint import Checkpoint
from ckpt.display import printable
from ckpt.errors import CkptError
from ckpt.target import is_coroutine_function
from ckpt.values import short_repr

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .options import Options

# asyncio, inspect, dis and json cost tens of milliseconds to import: replay start-up
# matters, so each is imported only by the mode that needs it.

EXIT_OK, EXIT_RAISED = 0, 1


def run(options: Options, checkpoint: Checkpoint, function: Callable[..., Any]) -> int:
    """Enter the mode `options.mode`; return the exit status."""
    handlers = {"break": debug_from_start, "until-error": until_error, "run": run_once,
                "shell": shell, "locals": shell}
    return handlers[options.mode](options, checkpoint, function)


def _invoke(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = function(*args, **kwargs)
    if isinstance(result, Coroutine):
        import asyncio

        return asyncio.run(result)
    return result


def _user_traceback(exc: BaseException) -> TracebackType | None:
    """The traceback below this module's frames: only the user's code."""
    tb = exc.__traceback__
    here = os.path.abspath(__file__)
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) == here:
        tb = tb.tb_next
    return tb


def _print_exception(exc: BaseException) -> None:
    """The user's traceback, escaped: its messages may hold the saved inputs' text."""
    import traceback

    lines = traceback.format_exception(type(exc), exc, _user_traceback(exc))
    sys.stderr.write(printable("".join(lines), newlines=True))


def run_once(options: Options, checkpoint: Checkpoint,
             function: Callable[..., Any]) -> int:
    """No interaction: run it, print the outcome, 0 on success and 1 on an exception."""
    try:
        result = _invoke(function, checkpoint.args, checkpoint.kwargs)
    except Exception as exc:
        _print_exception(exc)
        outcome = {"outcome": "raised", "exception": type(exc).__name__, "message": str(exc)}
        status = EXIT_RAISED
        text = f"{checkpoint.name} raised {type(exc).__name__}: {exc}"
    else:
        outcome = {"outcome": "returned", "repr": short_repr(result)}
        status = EXIT_OK
        text = f"{checkpoint.name} returned {short_repr(result)}"
    if options.json:
        import json

        print(json.dumps({"id": checkpoint.id, "name": checkpoint.name, **outcome}))
    else:
        print(printable(text))
    return status


def make_debugger(options: Options) -> Any:
    """A pdb-compatible debugger instance with `-c` commands queued."""
    name = options.debugger
    debugger: Any
    try:
        if name == "pdb":
            import pdb

            debugger = pdb.Pdb()
        elif name == "ipdb":
            from IPython.terminal.debugger import TerminalPdb

            debugger = TerminalPdb()
        elif name == "pudb":
            debugger = _Pudb()
        else:
            import pdbpp

            debugger = pdbpp.Pdb()
    except ImportError as exc:
        raise CkptError(
            f"the debugger {name} is not installed in {sys.executable}",
            hint=f"install it there (`{sys.executable} -m pip install {name}`) or use pdb",
        ) from exc
    debugger.rcLines.extend(options.command)
    return debugger


class _Pudb:
    """pudb behind the few pdb methods the modes use (it is a full-screen UI)."""

    def __init__(self) -> None:
        import pudb

        self._pudb = pudb
        self.rcLines: list[str] = []

    def runcall(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.rcLines:
            raise CkptError("pudb is a full-screen debugger and takes no -c commands",
                            hint="use --debugger pdb for scripted sessions")
        return self._pudb.runcall(function, *args, **kwargs)

    def set_break(self, filename: str, line: int, temporary: bool = False) -> None:
        self._pudb._get_debugger().set_break(filename, line, temporary=temporary)

    def reset(self) -> None:
        """Nothing to reset: pudb keeps its own state."""

    def interaction(self, frame: Any, tb: TracebackType | None) -> None:
        if self.rcLines:
            raise CkptError("pudb is a full-screen debugger and takes no -c commands",
                            hint="use --debugger pdb for scripted sessions")
        self._pudb.post_mortem(tb)


def debug_from_start(options: Options, checkpoint: Checkpoint,
                     function: Callable[..., Any]) -> int:
    """The debugger stopped at the first line of the function, arguments bound."""
    debugger = make_debugger(options)
    print(f"> breaking at the first line of {printable(checkpoint.name)}", file=sys.stderr)
    try:
        if is_coroutine_function(function):
            import asyncio

            # runcall cannot enter a coroutine: break on its body, run the event loop
            code = function.__code__
            debugger.set_break(code.co_filename, _first_body_line(code), temporary=True)
            debugger.rcLines.insert(0, "continue")
            debugger.runcall(asyncio.run, function(*checkpoint.args, **checkpoint.kwargs))
        else:
            debugger.runcall(function, *checkpoint.args, **checkpoint.kwargs)
    except _quit():
        return EXIT_OK
    except Exception as exc:
        _print_exception(exc)
        return EXIT_RAISED
    return EXIT_OK


def _quit() -> type[BaseException]:
    """The exception a debugger's `q` raises (bdb imported only by debugger modes)."""
    import bdb

    return bdb.BdbQuit


def _first_body_line(code: CodeType) -> int:
    """The first line of a function's body (the code's first line is the def's)."""
    import dis

    lines = [line for _, line in dis.findlinestarts(code) if line]
    later = [line for line in lines if line != code.co_firstlineno]
    return min(later) if later else code.co_firstlineno


def until_error(options: Options, checkpoint: Checkpoint,
                function: Callable[..., Any]) -> int:
    """Run it; on an exception, a post-mortem debugger at the frame that raised."""
    try:
        result = _invoke(function, checkpoint.args, checkpoint.kwargs)
    except Exception as exc:
        _print_exception(exc)
        print(f"\n{printable(checkpoint.name)} raised {type(exc).__name__}: entering "
              "post-mortem debugging (q to quit)", file=sys.stderr)
        debugger = make_debugger(options)
        debugger.reset()
        try:
            debugger.interaction(None, _user_traceback(exc))
        except _quit():
            pass
        return EXIT_RAISED
    print(printable(f"{checkpoint.name} now succeeds: it returned {short_repr(result)}"))
    return EXIT_OK


def _namespace(checkpoint: Checkpoint, function: Callable[..., Any],
               values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    module = sys.modules.get(getattr(function, "__module__", "") or "")
    namespace: dict[str, Any] = dict(vars(module)) if module is not None else {}
    namespace.update(values)
    handle = "call" if "call" not in namespace else "ckpt_call"

    def call_again() -> Any:
        """Call the function again with the variables as they are now."""
        kinds = checkpoint.kinds
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name in checkpoint.arguments:
            value = namespace.get(name, checkpoint.arguments[name])
            if kinds[name] in ("positional_only", "positional_or_keyword"):
                args.append(value)
            elif kinds[name] == "var_positional":
                args.extend(value)
            elif kinds[name] == "keyword_only":
                kwargs[name] = value
            else:
                kwargs.update(value)
        return _invoke(function, tuple(args), kwargs)

    namespace[handle] = call_again
    namespace.setdefault("checkpoint", checkpoint)
    return namespace, [handle]


def shell(options: Options, checkpoint: Checkpoint,
          function: Callable[..., Any]) -> int:
    """A console in the function's module with the arguments (or the locals) bound."""
    if options.mode == "locals":
        frame = checkpoint.frames[options.frame]
        values, what = frame.locals, f"the locals of {frame.function} at line {frame.line}"
    else:
        values, what = checkpoint.arguments, f"the arguments of {checkpoint.name}"
    namespace, (handle,) = _namespace(checkpoint, function, values)
    names = ", ".join(values) or "(none)"
    banner = printable(f"ckpt shell: {what}: {names}\n"
                       f"{handle}() calls {checkpoint.name} again with these variables; "
                       "`checkpoint` is the checkpoint. Ctrl-D to leave.", newlines=True)
    if options.shell == "ipython":
        try:
            from IPython.terminal.interactiveshell import TerminalInteractiveShell
        except ImportError:
            print("note: IPython is not installed here; using the standard console",
                  file=sys.stderr)
        else:
            ipython = TerminalInteractiveShell.instance(user_ns=namespace)
            print(banner)
            for command in options.command:
                ipython.run_cell(command)
            if sys.stdin.isatty() or not options.command:
                ipython.mainloop()
            return EXIT_OK
    return _console(namespace, banner, options.command)


def _console(namespace: dict[str, Any], banner: str, commands: list[str]) -> int:
    import code

    try:
        import readline  # noqa: F401  (line editing and history in the console)
    except ImportError:
        pass
    console = code.InteractiveConsole(namespace)
    if commands:
        print(banner)
        for command in commands:
            print(f">>> {command}")
            console.push(command)
        console.push("")
        if not sys.stdin.isatty():
            return EXIT_OK
        banner = ""
    console.interact(banner=banner, exitmsg="")
    return EXIT_OK
