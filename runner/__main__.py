"""`python -m _ckpt_runner`: restore the recorded process, load the checkpoint, replay it."""

from __future__ import annotations

import json
import os
import sys

from .options import parse

EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + 2  # as a shell reports a command ended by Ctrl-C (SIGINT)


def standby(fd: int) -> str | None:
    """Import what every replay needs, then wait for `cdip` to say what to replay.

    Returns the runner's options (JSON), or None when `cdip` closed the pipe unused.
    """
    import signal

    try:
        import hmac  # noqa: F401  (the verification's, loaded ahead of time)

        from . import replay  # noqa: F401
    except ImportError:
        pass  # main() reports it once it knows it is wanted
    with open(fd, "rb") as pipe:
        message = pipe.read()
    if not message:
        return None
    request = json.loads(message)
    if request["interrupts"]:
        # cdip started us with SIGINT ignored, so Ctrl-C could not kill a child still starting.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return str(request["options"])


def die_with_parent() -> None:
    """Die with `cdip`, even when it is killed with SIGKILL and cannot clean up (Linux).

    `cdip` names itself in `_CKPT_PARENT` (ckpt.supervise.PARENT_VARIABLE); the
    kernel then sends us SIGKILL when it ends. That covers only a parent alive when
    it is set: one that died before has made us an orphan already, as getppid()
    then shows. A process we start does not inherit it: when `cdip` is killed with
    SIGKILL, such a grandchild is orphaned (to init, or the nearest subreaper) and
    lives on; every other end of `cdip` kills it too (ckpt.descendants.kill_descendants).
    """
    expected = os.environ.pop("_CKPT_PARENT", "")  # not for the user's code to see
    if not expected.isdigit():
        return  # started by hand, or by a `cdip` older than this
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            # PR_SET_PDEATHSIG (1), SIGKILL (9)
            ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != int(expected):
        os._exit(128 + 9)  # as if the signal had come: nobody is waiting for a status


def main(argv: list[str] | None = None) -> int:
    """Replay one checkpoint; return the exit status."""
    die_with_parent()
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["--standby"]:
        waited = standby(int(arguments[1]))
        if waited is None:
            return 0
        arguments = [waited]
    options = parse(arguments)
    if options is None:
        return EXIT_USAGE
    try:
        from ckpt.errors import CkptError

        from . import replay
    except ImportError as exc:
        print(f"cdip: error: ckpt cannot be imported by {sys.executable}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from .bytecode import check_to_the_nanosecond

    check_to_the_nanosecond()  # before any of the user's modules is imported
    if options.handback:  # cdip reads how this child ended (--watch, a debugger's restart)
        from .handback import hand_back_at_exit

        hand_back_at_exit(options.handback)
    try:
        return replay.replay(options)
    except CkptError as exc:
        from ckpt.display import printable

        print(f"cdip: error: {printable(exc.message)}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {printable(exc.hint)}", file=sys.stderr)
        if options.handback:  # --watch's round line says why
            from .handback import outcome

            outcome(False, exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        # Ctrl-C before the function started (while its modules were imported, say):
        # the modes handle it once the function runs.
        print("\ncdip: interrupted before the replayed function started", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
