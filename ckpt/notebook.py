"""`%load_ext ckpt`: the `%ckpt` magic of IPython and Jupyter; failing cells' frames saved.

``%ckpt info [NAME]`` lists the store (or shows one checkpoint), as `cdip info`.
``%ckpt run NAME [OPTIONS]`` replays it in a fresh process, as `cdip run` (default
``--mode run``), its output shown in the cell: the modes that need a terminal
(break, until-error, shell, locals) need one, so run those in a terminal, or give
debugger commands with ``-c``. ``%ckpt here NAME`` binds the saved arguments in the
kernel, as variables of their names, and calls the kernel's *current* definition of
the function with them (by name, as a replay binds them): for a function defined in
the notebook, the one its name has in the kernel now, so an edited cell is what runs;
for a function of a module, the module as the kernel imported it.

Imported by `%load_ext ckpt` only (through `ckpt.load_ipython_extension`).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

USAGE = """usage:
  %ckpt info [NAME] [--json]     the checkpoints in the store; one in detail
  %ckpt run NAME [OPTIONS]       replay in a fresh process (default --mode run), as `cdip run`
  %ckpt here NAME                bind the saved arguments here and call today's definition"""


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext ckpt`: register `%ckpt` and save the frames of every failing cell."""
    from .excepthook import install_excepthook

    ipython.register_magic_function(_magic(ipython), "line", "ckpt")
    install_excepthook()


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext ckpt`: failing cells are no longer saved."""
    from .excepthook import uninstall_excepthook

    uninstall_excepthook()


def _magic(shell: Any) -> Callable[[str], Any]:
    def ckpt(line: str) -> Any:
        import shlex

        from IPython.core.error import UsageError

        __tracebackhide__ = True  # IPython shows their error from their function down
        try:
            words = shlex.split(line)
        except ValueError as exc:  # an unclosed quote
            raise UsageError(f"%ckpt {line}: {exc}") from None
        command, rest = (words[0], words[1:]) if words else ("", [])
        if command == "info":
            return info(rest)
        if command == "run":
            run(rest)  # its exit status is not the cell's value
            return None
        if command == "here":
            return here(shell, rest)
        raise UsageError(USAGE)

    ckpt.__doc__ = USAGE
    return ckpt


def info(words: list[str]) -> None:
    """`cdip info ...`, run here: nothing is unpickled, only listed."""
    from .cli import main

    try:
        main(["info", *words])
    except SystemExit:  # a usage error: argparse said what, on stderr
        pass


def run(words: list[str]) -> int:
    """`cdip run ...` in a fresh process, its output shown as it comes; its exit status."""
    import os
    import subprocess

    if not any(word in ("-m", "--mode", "-c", "--command") or word.startswith(("--mode=", "-m"))
               for word in words):
        words = [*words, "--mode", "run"]  # no terminal here for the interactive ones
    command = [sys.executable, "-m", "ckpt", "run", *words]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="backslashreplace",
                          env=environment) as child:
        try:
            for output in child.stdout or ():
                print(output, end="")
        except KeyboardInterrupt:  # the kernel's interrupt: the replay ends too
            child.terminate()
            raise
        status = child.wait()
    if status not in (0, 1):  # 1: the replayed function raised, as it says
        print(f"(exit status {status})")
    return status


def here(shell: Any, words: list[str]) -> Any:
    """Bind checkpoint `words[0]`'s arguments in the kernel; call today's definition with them.

    Capture is off during the call: an error it raises is shown, not saved again.
    """
    from IPython.core.error import UsageError

    from .checkpoint import load
    from .errors import CkptError

    __tracebackhide__ = True
    if len(words) != 1:
        raise UsageError("usage: %ckpt here NAME")
    try:
        checkpoint = load(words[0])
    except CkptError as exc:
        raise UsageError(f"{exc.message}{f' ({exc.hint})' if exc.hint else ''}") from None
    function = current_definition(shell.user_ns, checkpoint.location)
    binding = checkpoint.bind(function)
    if binding.missing:
        raise UsageError(binding.refusal(checkpoint.name))
    shell.user_ns.update(checkpoint.arguments)
    names = ", ".join(checkpoint.arguments) or "(none)"
    print(f"ckpt: {checkpoint.name} (id {checkpoint.id}): bound {names}; calling "
          f"{checkpoint.location['qualname']} as the kernel defines it now")
    if checkpoint.metadata.get("arguments_from_locals") is True:  # a failing cell's frame
        print("  (saved from the crash's stack: these are its parameters' values at the error)")
    for change in binding.changes:
        print(f"  {change}")
    return _call_uncaptured(function, binding.args, binding.kwargs)


def current_definition(namespace: dict[str, Any], location: dict[str, Any]) -> Any:
    """The function `location` names, as the kernel has it now (ckpt's decorator taken off).

    One of the notebook's own (its module ``__main__``) is found by its name in
    `namespace`; one of a module, in that module as imported here.
    """
    import importlib

    from IPython.core.error import UsageError

    from .checkpoint import unwrap

    module, qualname = location["module"], location["qualname"]
    first, *rest = qualname.split(".")
    try:
        owner: Any = namespace.get(first) if module == "__main__" else getattr(
            sys.modules.get(module) or importlib.import_module(module), first, None)
    except Exception as exc:
        raise UsageError(f"cannot import {module}: {type(exc).__name__}: {exc}") from None
    for part in rest:
        owner = getattr(owner, part, None)
    if owner is None or "<locals>" in qualname:
        where = "in this kernel" if module == "__main__" else f"in {module}"
        raise UsageError(f"{qualname} is not defined {where}: run the cell that defines it, "
                         "or replay the copy saved at capture with %ckpt run")
    return unwrap(owner)


def _call_uncaptured(function: Callable[..., Any], args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
    from . import excepthook
    from .decorator import disable, enable, is_enabled

    __tracebackhide__ = True
    was_enabled = is_enabled()
    disable()
    try:
        return function(*args, **kwargs)
    except BaseException as exc:
        excepthook.not_saved[:] = [exc]
        raise
    finally:
        if was_enabled:
            enable()
