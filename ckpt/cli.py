"""The `ckpt` / `cdip` program: start-up, errors and exit statuses (commands in `commands`)."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .errors import CkptError
    from .supervise import Standby
    from .zerocode import Program


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["run"]:
        from .zerocode import requested

        program = requested(arguments)
        if program is not None:  # `ckpt run script.py` / `-m module`: theirs, untouched
            return _run_program(program, _program_name(argv))
    standby = _head_start(arguments) if argv is None else None
    _never_fail_to_encode()
    try:
        status = _run(argv, standby)
    finally:
        if standby is not None:
            standby.cancel()
    if standby is not None:
        _leave(status)
    return status


def _never_fail_to_encode() -> None:
    r"""Let stdout write what its encoding cannot (``PYTHONIOENCODING=ascii``) as escapes.

    A name, a message or a repr from a checkpoint may hold any character: shown as
    ``\xe9`` rather than ending the command with a UnicodeEncodeError (stderr does
    this by default).
    """
    reconfigure = getattr(sys.stdout, "reconfigure", None)  # None when closed or replaced
    if reconfigure is not None:
        try:
            reconfigure(errors="backslashreplace")
        except (ValueError, OSError):
            pass


def _leave(status: int) -> None:
    """End a replay's supervisor at once: tearing the interpreter down costs ~10 ms.

    Nothing of ours is pending by then (the child has ended, no file is open
    for writing), so only the standard streams need flushing.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(status)


def _head_start(arguments: Sequence[str]) -> Standby | None:
    """For a replay, start its child before our own imports, so the two overlap."""
    if arguments[:1] != ["run"] or any(
        argument in ("-h", "--help") or argument.startswith("--python") for argument in arguments
    ):
        return None
    from .supervise import Standby, replay_env

    try:
        return Standby(replay_env())
    except OSError:
        return None  # no head start, then: the replay spawns its child as usual


def _program_name(argv: Sequence[str] | None) -> str:
    """How the user called us, for messages: ckpt, cdip or python -m ckpt."""
    prog = os.path.basename(sys.argv[0]) if argv is None else "cdip"
    return prog if prog in ("ckpt", "cdip") else "python -m ckpt"


def _run_program(program: Program, prog: str) -> int:
    """Run a program unchanged, saving its frames if it crashes (`zerocode`)."""
    from .errors import CkptError
    from .zerocode import execute, prepare

    try:
        code, main_module = prepare(program, prog)
    except CkptError as exc:
        return _error(prog, exc)
    return execute(code, main_module)  # their exceptions and exit status pass through


def _error(prog: str, exc: CkptError) -> int:
    """Say what is wrong (and what to do), as one or two lines; the exit status."""
    from .display import printable  # a message may quote a name or path from the store

    print(f"{prog}: error: {printable(exc.message)}", file=sys.stderr)
    if exc.hint:
        print(f"hint: {printable(exc.hint)}", file=sys.stderr)
    return exc.exit_code


def _run(argv: Sequence[str] | None, standby: Standby | None) -> int:
    from .commands import build_parser
    from .errors import EXIT_OK, EXIT_USAGE, CkptError

    prog = _program_name(argv)
    first = (sys.argv[1:] if argv is None else list(argv))[:1]
    parser = build_parser(prog, first[0] if first else None)  # only its parser, if a command
    args = parser.parse_args(argv)
    args.prog, args.standby = prog, standby
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except CkptError as exc:
        return _error(prog, exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `cdip info | head`: the reader left; say nothing more.
        sys.stderr.close()
        return EXIT_OK
