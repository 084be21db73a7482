"""The subcommands of `ckpt` / `cdip`, one small function each, and their parser."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import EXIT_OK, EXIT_USAGE, CkptError, CorruptCheckpointError
from .target import DEFAULT_KEEP, configured_keep

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .store import Entry, Store


# The store is imported by the commands that use it:
# `cdip --help` and a usage error need neither.
def _store(args: argparse.Namespace, trust: bool = False) -> Store:
    from .keys import check_key_variable
    from .location import find_store_path
    from .store import Store

    check_key_variable()
    return Store(find_store_path(args.dir), trust=trust)


def cmd_init(args: argparse.Namespace) -> int:
    """Create a .pyckpt store in the current directory (kept out of git)."""
    from .location import init_store

    path, created = init_store(os.getcwd())
    print(f"{'created' if created else 'already exists:'} {path}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    """List checkpoints, oldest first; with NAME, show one in detail."""
    from . import display

    store = _store(args)
    if args.name is not None:
        _, entry = store.local(store.find(args.name))  # a URL's: copied, blobs cached
        lines, data = display.detail(entry)
        print(json.dumps(data, indent=2, default=str) if args.json else "\n".join(lines))
        return EXIT_OK
    entries = store.entries()
    if args.json:
        print(json.dumps([display.entry_json(entry) for entry in entries], indent=2))
        return EXIT_OK
    from .retention import store_size

    total = store_size(store)  # a buffer that several checkpoints hold counts once
    print(f"store: {display.printable(store.path)} ({len(entries)} checkpoint(s), "
          f"{display.human_size(total)})")
    if not entries:
        exists = "" if store.remote or os.path.isdir(store.path) else (
            " (the directory does not exist yet)")
        print(f"no checkpoints yet{exists}: decorate a function with @ckpt.ckpt and run it")
        return EXIT_OK
    print("\n".join(display.listing(entries)))
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    """Delete checkpoints: an id, or a name's newest (--all: every one of that name)."""
    from . import display

    store = _store(args)
    doomed = {}
    for name_or_id in args.names:
        entry = store.find(name_or_id)
        matches = [entry]
        if args.all:
            matches = [e for e in store.entries() if e.name == entry.name]
        doomed.update({e.id: e for e in matches})
    for entry in doomed.values():
        store.remove(entry)
        print(display.printable(f"removed {entry.id}  {entry.name}"))
    return EXIT_OK


def cmd_clear(args: argparse.Namespace) -> int:
    """Delete every checkpoint in the store."""
    store = _store(args)
    entries = store.entries()
    if not entries:
        print(f"no checkpoints in {store.path}")
        return EXIT_OK
    if not args.yes and not _confirm(f"delete all {len(entries)} checkpoint(s) in {store.path}?"):
        print("nothing deleted")
        return EXIT_USAGE
    store.remove_all(entries)
    print(f"removed {len(entries)} checkpoint(s)")
    return EXIT_OK


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise CkptError(f"{question} (no terminal to ask)", hint="add --yes to confirm")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_gc(args: argparse.Namespace) -> int:
    """Keep the newest N checkpoints per name; remove broken files and leftovers."""
    from . import display, retention

    store = _store(args)
    keep = args.keep if args.keep is not None else configured_keep()
    entries = store.entries()
    # Only what can never be read goes: a checkpoint signed elsewhere, of a newer
    # format or unreadable to us now is kept (and said so).
    doomed = [entry for entry in entries if entry.problem and entry.dead]
    kept = [entry for entry in entries if entry.problem and not entry.dead]
    by_name: dict[str, list[Entry]] = {}
    for entry in entries:
        if not entry.problem:
            by_name.setdefault(entry.key, []).append(entry)
    for same_name in by_name.values():  # oldest first, as listed
        doomed += same_name[: max(len(same_name) - keep, 0)]
    store.remove_all(doomed)
    leftovers = retention.stale_temporaries(store) + retention.orphans(store)
    retention.remove_leftovers(store, leftovers)
    freed = retention.release_blobs(store)  # blobs no part holds any more
    print(f"removed {len(doomed)} checkpoint(s) and {len(leftovers)} leftover file(s)"
          + (f"; freed {display.human_size(freed)} of unused buffers" if freed else ""))
    if kept:
        print(f"kept {len(kept)} checkpoint(s) that cannot be read here but are not broken "
              "(signed elsewhere, newer format, unreadable): see `cdip info`")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """Pack checkpoints (default: all) into one portable bundle file."""
    from . import display, export

    store = _store(args)
    if args.names:
        entries = list({e.id: e for e in (store.find(name) for name in args.names)}.values())
    else:
        entries = [entry for entry in store.entries() if not entry.problem]
    if not entries:
        raise CkptError(f"no checkpoints to export in {store.path}")
    # a URL's are copied into its local copy first (blobs cached), and packed from there
    entries = [entry if entry.problem else store.local(entry)[1] for entry in entries]
    carried = export.export(entries, args.output, tuple(args.redact))
    print(f"exported {len(carried)} checkpoint(s) to {display.printable(args.output)}, "
          "with these values (name: type):")
    print("\n".join(export.carried_lines(carried)))
    for pattern in export.unmatched(carried, args.redact):
        print(f"note: --redact {display.printable(repr(pattern))} matched no argument or "
              "local", file=sys.stderr)
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    """Adopt the checkpoints of a bundle into this store, signed with your key."""
    from . import bundle, display, mirror

    store = _store(args)
    printable = display.printable

    def show_and_confirm(opened: bundle.Bundle) -> bool:
        # Everything shown comes from the bundle: escaped, so it cannot drive the terminal.
        print(f"{printable(args.bundle)}: {len(opened.checkpoints)} checkpoint(s) exported from "
              f"{printable(opened.host)} {display.age(opened.created)}")
        rows = [["ID", "NAME", "TRIGGER", "CREATED", "EXCEPTION", "FUNCTION"]]
        for item in opened.checkpoints:
            rows.append([printable(display.shorten(item.id, 16)),
                         printable(display.shorten(item.name, 50)), item.trigger,
                         display.local_time(item.created),
                         printable(display.shorten(item.exception_text, 50)),
                         printable(display.shorten(item.function, 60))])
        print("\n".join(display.table(rows)))
        print("Loading a checkpoint runs code from it: import only bundles you trust.")
        return bool(args.yes) or _confirm(f"import them into {printable(store.path)}?")

    adopted = mirror.import_bundle(args.bundle, store, show_and_confirm)  # a URL's too
    if not adopted:
        print("nothing imported")
        return EXIT_USAGE
    for item in adopted:
        note = "" if item.old == item.new else (
            f" (was {printable(repr(display.shorten(item.old, 16)))} in the bundle: "
            "an id already here, or not one of ours)")
        print(f"imported {item.new}  {printable(display.shorten(item.name, 60))}{note}")
    return EXIT_OK


def cmd_pull(args: argparse.Namespace) -> int:
    """Copy checkpoints (with their buffers) from the store, e.g. a URL, into a local one."""
    from . import display
    from .location import find_store_path, local_store_path
    from .mirror import pull
    from .store import Store

    source = _store(args)
    target = Store(find_store_path(args.to) if args.to else local_store_path())
    for entry, fetched in pull(source, args.names, target):
        print(display.printable(f"pulled {entry.id}  {entry.name}  "
                                f"({display.human_size(fetched)} fetched) into {target.path}"))
    return EXIT_OK


def cmd_key(args: argparse.Namespace) -> int:
    """Print the checkpoint key as PYCKPT_KEY takes it, for cluster workers (a secret)."""
    from .keys import load_key

    print(load_key().hex())
    return EXIT_OK


def cmd_pin(args: argparse.Namespace) -> int:
    """Write a pytest regression test that replays a checkpoint (default: the newest)."""
    from . import pin

    return pin.command(_store(args), args.name, args.output, args.expect)


MODES = ("break", "until-error", "shell", "locals", "run")
INTERACTIVE = ("break", "until-error", "shell", "locals")


def cmd_run(args: argparse.Namespace) -> int:
    """Replay a checkpoint (default: the newest) in a fresh interpreter."""
    from . import display, supervise, workers

    # Names resolve among verified checkpoints only, --trust or not: --trust vouches
    # for the one checkpoint the user names by its id, never for whatever is newest.
    store = _store(args)
    entry = workers.find(store, args.name, args.rank, args.worker)
    if entry.problem and not (args.trust and args.name and entry.id.startswith(args.name)):
        raise CorruptCheckpointError(
            f"checkpoint {entry.id} cannot be replayed: {display.printable(entry.problem)}",
            hint=f"`cdip gc` removes broken checkpoints; one signed elsewhere is adopted with "
                 f"`cdip import`, or replayed once with `--trust {entry.id}` (by its id)")
    mode = args.mode or ("until-error" if entry.trigger == "error" else "break")
    if args.watch or args.until_pass:
        from .watch import watched_mode

        mode = watched_mode(args.mode, args.watch)
    ide = _ide(args, mode)
    if mode in INTERACTIVE and not args.command and not ide and not _is_terminal(sys.stdin):
        raise CkptError(f"--mode {mode} needs a terminal, and standard input is not one",
                        hint="use --mode run, or give debugger commands with -c")
    if not entry.problem or args.trust:  # a URL's replays from its local copy (blobs cached)
        store, entry = store.local(entry)
    recorded = None if entry.problem else _recorded_interpreter(store, entry)
    python, why = _interpreter(args.python, recorded)
    if not supervise.runner_importable(python):
        raise CkptError(f"ckpt is not installed in {python}, the interpreter to replay with",
                        hint=f"install it there, or pass --python {sys.executable}")
    if args.watch and args.frame is not None:
        from .watch import check_frame

        check_frame(entry, args.frame, mode)
    print(display.printable(
        f"{args.prog}: replaying {entry.name} (id {entry.id}, saved on {entry.trigger} "
        f"{display.age(entry.created)}) with {python}{why}, mode {mode}"), file=sys.stderr)
    options = {"store": store.path, "id": entry.id, "mode": mode,
               "frame": args.frame, "debugger": args.debugger, "shell": args.shell,
               "json": args.json, "trust": args.trust, "command": args.command,
               "cwd": _directory(args.cwd),
               "run_script_top_level": args.run_script_top_level,
               "device": args.device, "from_changed": args.from_changed, **ide}
    with supervise.Supervisor(python, args.standby) as supervisor:
        if args.watch:
            from .watch import watch

            return watch(supervisor, options, args.until_pass)
        if mode in ("break", "until-error"):  # where a debugger's restart starts a fresh child
            return supervisor.replay(options).status
        return supervisor.run(json.dumps(options))


def _ide(args: argparse.Namespace, mode: str) -> dict[str, object]:
    """--debugger debugpy's options for the child; empty when no IDE is the debugger."""
    if args.debugger != "debugpy" or mode not in ("break", "until-error"):
        if args.listen or args.wait_for_client:
            raise CkptError("--listen and --wait-for-client go with --debugger debugpy, "
                            "in --mode break or until-error")
        return {}
    return {"listen": args.listen or ("127.0.0.1", 5678),  # VS Code's attach default
            "wait_for_client": args.wait_for_client}


def _directory(path: str | None) -> str | None:
    """--cwd DIR, made absolute; None when not given."""
    if path is None:
        return None
    if not os.path.isdir(path):
        raise CkptError(f"--cwd {path}: not a directory")
    return os.path.abspath(path)


def _is_terminal(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)  # None: the stream was closed (`<&-`)
    return bool(isatty is not None and isatty())


def _recorded_interpreter(store: Store, entry: Entry) -> str | None:
    """The interpreter the checkpoint was taken with, read from its verified header only.

    Under --trust nothing is verified, so nothing recorded is executed: None.
    """
    from .fileformat import read_headers
    from .header import CallDetail

    key = store.reading_key()
    if key is None:
        return None
    recorded = CallDetail.from_json(read_headers(entry.call_path, key)[1]).metadata
    executable = recorded.get("executable")
    return executable if isinstance(executable, str) and executable else None


def _interpreter(requested: str | None, recorded: str | None) -> tuple[str, str]:
    """The interpreter to replay with, and how it was chosen when it is not ours.

    The recorded one is used only when no other user could have put it there: a
    virtual environment deleted since, recreated by someone else at the same path,
    would otherwise run their program as us.
    """
    from .ownership import changeable_by_others
    from .supervise import is_this_interpreter

    if requested:
        if not os.access(requested, os.X_OK):
            raise CkptError(f"--python {requested}: not an executable")
        chosen, why = requested, " (--python)"
    elif recorded and os.access(recorded, os.X_OK):
        unsafe = changeable_by_others(recorded)
        if unsafe is not None:
            return sys.executable, (f" (not the recorded {recorded}, which another user "
                                    f"could have put there: {unsafe})")
        chosen, why = recorded, " (recorded at capture)"
    else:
        chosen, why = sys.executable, ""
    return chosen, ("" if is_this_interpreter(chosen) else
                    f"{why}, not the one cdip runs under ({sys.executable})")


def _address(text: str) -> tuple[str, int]:
    """--listen HOST:PORT (an IPv6 host in brackets: [::1]:5678)."""
    host, colon, port = text.rpartition(":")
    if not colon or not host.strip("[]") or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT, such as 127.0.0.1:5678")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, told the terminal's width.

    Left to find it, each one imports shutil (and bz2, lzma, fnmatch with it):
    a few milliseconds of every `cdip` command, help or not.
    """

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _columns() - 2 if width is None else width)


def _columns() -> int:
    """The terminal's width as `shutil.get_terminal_size()` gives it."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        stream = sys.__stdout__
        try:
            columns = os.get_terminal_size(stream.fileno()).columns if stream else 0
        except (ValueError, OSError):
            columns = 0
    return columns or 80


def build_parser(prog: str, command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of every subcommand, or only of `command` when it names one.

    Building the parsers of all eleven costs ~3 ms, a tenth of `cdip info`: `cli`
    passes the command line's first word, so only the parser that will parse it is
    built (anything else, `--help` first, an unknown command, builds them all).
    """
    parser = argparse.ArgumentParser(
        prog=prog, description="Save failing function calls; replay them with today's code.",
        formatter_class=_Formatter)
    common = argparse.ArgumentParser(add_help=False, formatter_class=_Formatter)
    common.add_argument("--dir", metavar="PATH", help="the store (default: PYCKPT_DIR, "
                        "a .pyckpt upward from here, else the user state directory)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (handler, add_options) in _COMMANDS.items():
        if command in _COMMANDS and name != command:
            continue
        doc = (handler.__doc__ or "").strip()
        sub = commands.add_parser(name, parents=[common], help=doc, description=doc,
                                  formatter_class=_Formatter)
        sub.set_defaults(handler=handler)
        add_options(sub)
    from .zerocode import MAIN_EPILOG

    parser.epilog = MAIN_EPILOG
    return parser


def _init_options(init: argparse.ArgumentParser) -> None:
    pass  # no options of its own


def _info_options(info: argparse.ArgumentParser) -> None:
    info.add_argument("name", nargs="?", metavar="NAME|ID")
    info.add_argument("--json", action="store_true", help="machine-readable output")


def _rm_options(rm: argparse.ArgumentParser) -> None:
    rm.add_argument("names", nargs="+", metavar="NAME|ID")
    rm.add_argument("--all", action="store_true", help="every checkpoint of each name")


def _clear_options(clear: argparse.ArgumentParser) -> None:
    clear.add_argument("--yes", "-y", action="store_true", help="do not ask")


def _gc_options(gc: argparse.ArgumentParser) -> None:
    gc.add_argument("--keep", type=_positive, metavar="N",
                    help=f"checkpoints kept per name (default PYCKPT_KEEP or {DEFAULT_KEEP})")


def _export_options(export: argparse.ArgumentParser) -> None:
    export.add_argument("names", nargs="*", metavar="NAME|ID", help="default: every checkpoint")
    export.add_argument("-o", "--output", required=True, metavar="FILE")
    export.add_argument("--redact", action="append", default=[], metavar="PATTERN",
                        help="replace the values of arguments and locals whose names match "
                             "(a name or a glob such as '*token*') by a placeholder in the "
                             "bundle; repeatable")


def _key_options(key: argparse.ArgumentParser) -> None:
    key.epilog = (
        "Created if there is none yet (PYCKPT_KEY_FILE, else ~/.config/pyckpt/key). Give it to "
        "workers as PYCKPT_KEY=$(cdip key): whoever holds it can make your cdip run their code.")


def _pull_options(pulled: argparse.ArgumentParser) -> None:
    pulled.add_argument("names", nargs="+", metavar="NAME|ID")
    pulled.add_argument("--to", metavar="DIR", help="the local store to copy into (default: "
                        "yours without PYCKPT_DIR: a .pyckpt upward, else the state directory)")


def _import_options(imported: argparse.ArgumentParser) -> None:
    imported.add_argument("bundle", metavar="FILE")
    imported.add_argument("--yes", "-y", action="store_true", help="do not ask")


def _pin_options(pinned: argparse.ArgumentParser) -> None:
    pinned.add_argument("name", nargs="?", metavar="NAME|ID", help="default: the newest")
    pinned.add_argument("-o", "--output", metavar="PATH",
                        help="the test file, or a directory for it (default: "
                             "tests/test_pin_NAME.py, or ./ without tests/); its bundle is "
                             "written next to it, as the same name ending in .ckpt")
    pinned.add_argument("--expect", metavar="VALUE",
                        help="a Python literal the call must return (default: it must only "
                             "not raise)")
    pinned.epilog = ("The test replays the call in pytest's process with today's code and "
                     "needs only ckpt. It loads the bundle without your key: it trusts the "
                     "bundle whose SHA-256 it pins, committed next to it.")


def _run_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("name", nargs="?", metavar="NAME|ID", help="default: the newest")
    run.add_argument("--mode", "-m", choices=MODES,
                     help="default: until-error for an error checkpoint, else break")
    resumed = run.add_mutually_exclusive_group()
    resumed.add_argument("--frame", type=int, metavar="N",
                         help="re-call the function of saved frame N (0 the decorated "
                              "function's, -1 the innermost that can be: lambdas and "
                              "comprehensions are passed over) with its arguments taken from "
                              "its locals at the error, skipping the work above it; with --mode "
                              "locals: whose locals to show (default: your innermost frame's)")
    resumed.add_argument("--from-changed", action="store_true",
                         help="as --frame, for the innermost saved frame whose function's "
                              "source changed since capture")
    run.add_argument("--debugger", choices=("pdb", "ipdb", "pudb", "pdbpp", "debugpy"),
                     default="pdb", help="in pdb, ipdb, pdbpp `restart` replays afresh "
                                         "with today's code, breakpoints kept (pudb: r when "
                                         "it ends); debugpy: your IDE (VS Code, nvim-dap, any "
                                         "DAP client) attaches; `pip install ckpt[loop]`")
    run.add_argument("--listen", type=_address, metavar="HOST:PORT",
                     help="with --debugger debugpy: where the IDE attaches (default "
                          "127.0.0.1:5678, as VS Code's attach; port 0: any free one)")
    run.add_argument("--wait-for-client", action="store_true",
                     help="with --debugger debugpy: wait for the IDE before running (break "
                          "mode always waits; until-error waits at an exception)")
    run.add_argument("--shell", choices=("python", "ipython"), default="python")
    run.add_argument("-c", "--command", action="append", default=[], metavar="CMD",
                     help="a debugger (or shell) command to run first; repeatable")
    run.add_argument("--python", metavar="PATH",
                     help="interpreter to replay with, with its own packages (default: the "
                          "one recorded)")
    run.add_argument("--cwd", metavar="DIR",
                     help="replay in DIR, with the code of DIR's checkout (default: the "
                          "checkout you are in if it holds the function's file, else the "
                          "recorded directory)")
    run.add_argument("--run-script-top-level", action="store_true",
                     help="for a function of a script: run all of the script's top level, as "
                          "an import would (default: only its imports, definitions and "
                          "constants, not the pipeline it drives)")
    run.add_argument("--device", metavar="DEVICE",
                     help="cpu, cuda or cuda:N: put the saved torch tensors (and modules), "
                          "CuPy and JAX arrays there (default: the device they were captured "
                          "on, else the CPU; cpu makes CuPy arrays numpy arrays)")
    run.add_argument("--rank", type=int, metavar="N",
                     help="the newest checkpoint of NAME saved by rank N (torch.distributed "
                          "RANK, or Slurm's SLURM_PROCID)")
    run.add_argument("--worker", metavar="W",
                     help="the newest checkpoint of NAME saved by worker W: a Dask worker's "
                          "name or address, a Slurm array task (JOB_TASK or TASK), the start "
                          "of a Ray worker or node id")
    run.add_argument("--watch", "-w", action="store_true",
                     help="replay again, in a fresh interpreter, each time a source file it "
                          "imported or a .py file of its project changes (--mode run, the "
                          "default, or until-error); Ctrl-C to stop (needs ckpt[loop])")
    run.add_argument("--until-pass", action="store_true",
                     help="with --watch: stop, with exit status 0, at the first replay "
                          "that succeeds")
    run.add_argument("--json", action="store_true", help="with --mode run: the outcome as JSON")
    run.add_argument("--trust", action="store_true",
                     help="replay even if the checkpoint does not verify under your key "
                          "(loading a pickle can run code: only for files you trust)")
    from .zerocode import RUN_EPILOG

    run.epilog = RUN_EPILOG


# Each subcommand: what runs it, and what adds its options to its parser (in help's order).
_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int],
                           Callable[[argparse.ArgumentParser], None]]] = {
    "init": (cmd_init, _init_options),
    "info": (cmd_info, _info_options),
    "rm": (cmd_rm, _rm_options),
    "clear": (cmd_clear, _clear_options),
    "gc": (cmd_gc, _gc_options),
    "export": (cmd_export, _export_options),
    "key": (cmd_key, _key_options),
    "pull": (cmd_pull, _pull_options),
    "import": (cmd_import, _import_options),
    "pin": (cmd_pin, _pin_options),
    "run": (cmd_run, _run_options),
}
