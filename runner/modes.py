"""The replay modes: break, until-error, shell, locals and run."""

from __future__ import annotations

import collections
import os
import sys
from collections.abc import AsyncGenerator, Coroutine, Generator
from types import CodeType, TracebackType

from ckpt.binding import Binding, bind, parameters
from ckpt.checkpoint import Checkpoint
from ckpt.display import printable
from ckpt.values import short_repr

from . import handback

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .options import Options

# asyncio, inspect, dis and json cost tens of milliseconds to import: replay start-up
# matters, so each is imported only by the mode that needs it.

EXIT_OK, EXIT_RAISED = 0, 1
EXIT_INTERRUPTED = 128 + 2  # as a shell reports a command ended by Ctrl-C (SIGINT)
_SUSPENDING = 0x20 | 0x80 | 0x200  # CO_GENERATOR, CO_COROUTINE, CO_ASYNC_GENERATOR
_SHOWN_ITEMS = 10  # of what a generator yielded, the first few are kept to show


def run(options: Options, checkpoint: Checkpoint, function: Callable[..., Any],
        binding: Binding) -> int:
    """Enter the mode `options.mode`; return the exit status."""
    handback.started()
    if MODES[options.mode].tool == "debugger":
        from .debuggers import start

        start(options)  # what the debugger needs first: debugpy listens for the IDE
    return MODES[options.mode].enter(options, checkpoint, function, binding)


class Yielded:
    """What a generator yielded: how many values, and the first few of them."""

    def __init__(self) -> None:
        self.total = 0
        self.first: list[Any] = []

    def add(self, value: Any) -> None:
        """Count one more value (kept only while few)."""
        self.total += 1
        if self.total <= _SHOWN_ITEMS:
            self.first.append(value)

    def __str__(self) -> str:
        more = f" (the first {len(self.first)})" if self.total > len(self.first) else ""
        values = "value" if self.total == 1 else "values"
        return f"yielded {self.total} {values}: {short_repr(self.first)}{more}"


def _drain(result: Any) -> Any:
    """What a call's result comes to: a coroutine awaited, a generator iterated to its end."""
    if isinstance(result, Coroutine):
        import asyncio

        return asyncio.run(result)
    if isinstance(result, AsyncGenerator):
        import asyncio

        return asyncio.run(_collect_async(result))
    if isinstance(result, Generator):
        yielded = Yielded()
        for item in result:
            yielded.add(item)
        return yielded
    return result


async def _collect_async(agen: AsyncGenerator[Any, Any]) -> Yielded:
    yielded = Yielded()
    async for item in agen:
        yielded.add(item)
    return yielded


def _invoke(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return _drain(function(*args, **kwargs))


def _outcome(result: Any) -> str:
    return str(result) if isinstance(result, Yielded) else f"returned {short_repr(result)}"


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


def run_once(options: Options, checkpoint: Checkpoint, function: Callable[..., Any],
             binding: Binding) -> int:
    """No interaction: run it, print the outcome; 0 on success, 1 on an exception."""
    outcome: dict[str, Any]
    try:
        result = _invoke(function, binding.args, binding.kwargs)
    except KeyboardInterrupt as exc:
        _print_exception(exc)  # where it was: the user's frames only
        outcome = {"outcome": "interrupted"}
        status, text = EXIT_INTERRUPTED, f"{checkpoint.name} was interrupted (Ctrl-C)"
    except Exception as exc:
        _print_exception(exc)
        outcome = {"outcome": "raised", "exception": type(exc).__name__, "message": str(exc)}
        status = EXIT_RAISED
        text = f"{checkpoint.name} raised {type(exc).__name__}: {exc}"
    else:
        outcome = {"outcome": "returned", "repr": short_repr(result)}
        if isinstance(result, Yielded):
            outcome.update(repr=short_repr(result.first), yielded=result.total)
        status, text = EXIT_OK, f"{checkpoint.name} {_outcome(result)}"
    handback.outcome(status == EXIT_OK, text)
    if options.json:
        import json

        print(json.dumps({"id": checkpoint.id, "name": checkpoint.name, **outcome}))
    else:
        print(printable(text))
    return status


def debug_from_start(options: Options, checkpoint: Checkpoint, function: Callable[..., Any],
                     binding: Binding) -> int:
    """The debugger stopped at the first line of the function, arguments bound."""
    from .debuggers import make_debugger

    debugger = make_debugger(options)
    print(f"> breaking at the first line of {printable(checkpoint.name)}", file=sys.stderr)
    code = getattr(function, "__code__", None)
    try:
        if code is not None and code.co_flags & _SUSPENDING:
            # runcall would stop only at the call that makes the coroutine or generator:
            # break on its body instead, and run it to the end
            debugger.set_break(code.co_filename, _first_body_line(code), temporary=True)
            debugger.rcLines.insert(0, "continue")
            result = debugger.runcall(_drain, function(*binding.args, **binding.kwargs))
        else:
            result = debugger.runcall(function, *binding.args, **binding.kwargs)
    except _quit():
        return EXIT_OK
    except Exception as exc:
        if handback.is_restart(debugger, exc):
            handback.restart()
            return EXIT_OK
        _print_exception(exc)
        handback.outcome(False, _raised(checkpoint, exc))
        status = EXIT_RAISED
    else:
        handback.outcome(True, f"{checkpoint.name} {_outcome(result)}")
        status = EXIT_OK
    if handback.pudb_asks_restart(debugger):
        handback.restart()
    return status


def _quit() -> type[BaseException]:
    """The exception a debugger's `q` raises (bdb imported only by debugger modes)."""
    import bdb

    return bdb.BdbQuit


def _raised(checkpoint: Checkpoint, exc: BaseException) -> str:
    return f"{checkpoint.name} raised {type(exc).__name__}: {exc}"


def _first_body_line(code: CodeType) -> int:
    """The first line of a function's body (the code's first line is the def's)."""
    import dis

    lines = [line for _, line in dis.findlinestarts(code) if line]
    later = [line for line in lines if line != code.co_firstlineno]
    return min(later) if later else code.co_firstlineno


def until_error(options: Options, checkpoint: Checkpoint, function: Callable[..., Any],
                binding: Binding) -> int:
    """Run it; on an exception or Ctrl-C, a post-mortem in the user's innermost frame.

    Restarted with breakpoints kept, it runs under the debugger, which stops at them.
    """
    debugger = _at_breakpoints(options) if options.breakpoints else None
    try:
        if debugger is None:
            result = _invoke(function, binding.args, binding.kwargs)
        else:
            result = debugger.runcall(_invoke, function, binding.args, binding.kwargs)
    except (Exception, KeyboardInterrupt) as exc:
        if debugger is not None and isinstance(exc, _quit()):
            return EXIT_OK
        if debugger is not None and handback.is_restart(debugger, exc):
            handback.restart()
            return EXIT_OK
        interrupted = isinstance(exc, KeyboardInterrupt)
        _print_exception(exc)
        handback.outcome(False, _raised(checkpoint, exc))
        what = "was interrupted (Ctrl-C)" if interrupted else f"raised {type(exc).__name__}"
        print(f"\n{printable(checkpoint.name)} {what}: entering post-mortem debugging "
              "(q to quit)", file=sys.stderr)
        _post_mortem(options, exc, debugger)
        return EXIT_INTERRUPTED if interrupted else EXIT_RAISED
    text = f"{checkpoint.name} now succeeds: it {_outcome(result)}"
    handback.outcome(True, text)
    print(printable(text))
    return EXIT_OK


def _at_breakpoints(options: Options) -> Any:
    """A debugger that lets the call run until it reaches one of the kept breakpoints."""
    from .debuggers import make_debugger

    debugger = make_debugger(options)
    debugger.rcLines.insert(0, "continue")  # past the first line, where runcall stops
    return debugger


def _post_mortem(options: Options, raised: BaseException, debugger: Any = None) -> None:
    """The debugger on `raised`, at the user's innermost frame, saying which that is."""
    from .debuggers import make_debugger, post_mortem
    from .frames import innermost_user, reaching_user_code, traceback_frames, where

    exc = reaching_user_code(raised)
    tb = _user_traceback(exc)
    frames = traceback_frames(tb)
    start = innermost_user([frame.f_code.co_filename for frame, _ in frames])
    if frames:
        print(printable(where(frames, start)), file=sys.stderr)
    if debugger is None:
        debugger = make_debugger(options)
    try:
        post_mortem(debugger, exc, tb, frames[start][0] if frames else None)
    except _quit():
        pass
    except Exception as exc:
        if not handback.is_restart(debugger, exc):
            raise
        handback.restart()
        return
    if handback.pudb_asks_restart(debugger):
        handback.restart()


def _namespace(checkpoint: Checkpoint, function: Callable[..., Any],
               values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    module = sys.modules.get(getattr(function, "__module__", "") or "")
    globals_ = dict(vars(module)) if module is not None else {}
    namespace: dict[str, Any] = dict(globals_)
    namespace.update(values)
    handle = "call" if "call" not in namespace else "ckpt_call"
    absent = object()

    def call_again() -> Any:
        """Call the function again with the variables as they are now, bound by name."""
        current = {name: namespace.get(name, saved)
                   for name, saved in checkpoint.arguments.items()}
        kinds = dict(checkpoint.kinds)
        for parameter in parameters(function) or []:
            value = namespace.get(parameter.name, absent)
            # a parameter added since capture takes a variable the user set, not a global
            if parameter.name not in current and value is not absent \
                    and value is not globals_.get(parameter.name, absent):
                current[parameter.name], kinds[parameter.name] = value, parameter.kind
        binding = bind(current, kinds, function)
        if binding.missing:
            raise TypeError(f"{binding.refusal(checkpoint.name)}: set a variable of that "
                            f"name, then {handle}() again")
        return _invoke(function, binding.args, binding.kwargs)

    namespace[handle] = call_again
    namespace.setdefault("checkpoint", checkpoint)
    return namespace, [handle]


def shell(options: Options, checkpoint: Checkpoint, function: Callable[..., Any],
          binding: Binding) -> int:
    """A console in the function's module with the arguments (or the locals) bound."""
    if options.mode == "locals":
        frame = checkpoint.frames[options.frame or 0]
        values, what = frame.locals, f"the locals of {frame.function} at line {frame.line}"
    else:
        values, what = checkpoint.arguments, f"the arguments of {checkpoint.name}"
    namespace, (handle,) = _namespace(checkpoint, function, values)
    names = ", ".join(values) or "(none)"
    unset = "".join(f"\n{name} has no saved value: set it before {handle}()"
                    for name in binding.missing)
    banner = printable(f"ckpt shell: {what}: {names}\n"
                       f"{handle}() calls {checkpoint.name} again with these variables; "
                       f"`checkpoint` is the checkpoint. Ctrl-D to leave.{unset}", newlines=True)
    if options.shell == "ipython":
        from IPython.terminal.interactiveshell import TerminalInteractiveShell

        ipython: Any = TerminalInteractiveShell.instance(user_ns=namespace)  # untyped
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


class Mode(collections.namedtuple("Mode", "enter tool")):
    """A replay mode: the function that enters it, and what it needs ("debugger", "shell", "")."""

    __slots__ = ()
    enter: Callable[[Options, Checkpoint, Callable[..., Any], Binding], int]
    tool: str  # checked before any user code runs (debuggers.check)


MODES = {
    "break": Mode(debug_from_start, "debugger"),
    "until-error": Mode(until_error, "debugger"),
    "shell": Mode(shell, "shell"),
    "locals": Mode(shell, "shell"),
    "run": Mode(run_once, ""),
}
