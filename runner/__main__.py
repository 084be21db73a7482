"""`python -m _ckpt_runner`: restore the recorded process, load the checkpoint, replay it."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Callable

EXIT_USAGE = 2


def parse(argv: list[str]) -> argparse.Namespace:
    """The options `cdip run` passes on."""
    parser = argparse.ArgumentParser(prog="_ckpt_runner")
    parser.add_argument("--store", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--frame", type=int, default=0)
    parser.add_argument("--debugger", default="pdb")
    parser.add_argument("--shell", default="python")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--trust", action="store_true")
    parser.add_argument("-c", "--command", action="append", default=[])
    return parser.parse_args(argv)


def restore_process(metadata: dict[str, object]) -> Callable[[str], str]:
    """The working directory, `sys.path` and `sys.argv` of the captured process.

    Returns how to map a recorded path to this machine: when the recorded
    working directory is gone (a checkpoint from CI, say), paths under it are
    taken relative to the current directory instead.
    """
    from ckpt.drift import relocated

    cwd = metadata.get("cwd")
    remap: Callable[[str], str] = str
    if isinstance(cwd, str) and cwd:
        try:
            os.chdir(cwd)
        except OSError:
            here = os.getcwd()
            print(f"note: the recorded working directory {cwd} does not exist here; "
                  f"paths under it are taken from {here}", file=sys.stderr)
            remap = functools.partial(relocated, recorded_cwd=cwd, here=here)
    recorded = [remap(p) for p in metadata.get("path", []) if isinstance(p, str)]  # type: ignore[attr-defined]
    # An entry missing for this interpreter too (python311.zip) is no news.
    missing = [p for p in recorded if p and not os.path.exists(p) and p not in sys.path]
    if missing:
        what = "entry no longer exists" if len(missing) == 1 else "entries no longer exist"
        print(f"note: {len(missing)} recorded sys.path {what}: {', '.join(missing[:3])}",
              file=sys.stderr)
    # The recorded path first; this interpreter's own after it, so ckpt stays importable.
    ours = [p for p in sys.path if p not in recorded and p != ""]
    sys.path[:] = recorded + ours
    argv = metadata.get("argv")
    if isinstance(argv, list) and argv:
        sys.argv[:] = [remap(str(a)) for a in argv]
    return remap


def main(argv: list[str] | None = None) -> int:
    """Replay one checkpoint; return the exit status."""
    options = parse(sys.argv[1:] if argv is None else argv)
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]  # `-m` put the launch directory first; the recorded path decides
    try:
        from ckpt.errors import CkptError

        from . import replay
    except ImportError as exc:
        print(f"cdip: error: ckpt cannot be imported by {sys.executable}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return replay.replay(options, restore_process)
    except CkptError as exc:
        print(f"cdip: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
