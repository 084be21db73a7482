"""`cdip pin`: a checkpoint turned into a pytest regression test, with its bundle next to it.

The test file replays the saved call in the test's own process, with the code as
it is when the test runs, and fails while the call still raises (or, with
`--expect`, returns anything but the expected value). Its bundle is written by
`cdip export` (`ckpt.export`).

Trust: a bundle is signed under its exporter's key, which a colleague or a CI
runner does not have. The test trusts the bundle because the test file pins the
bundle's SHA-256: whoever can change the bundle in the repository can change the
test (which is code pytest runs) as well, so the repository vouches for both. A
bundle that is not the one pinned is refused before anything in it is unpickled.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile

from .display import printable
from .errors import EXIT_OK, CkptError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    from .header import CallDetail
    from .store import Entry, Store

_CHUNK = 1 << 20


def command(store: Store, name: str, output: str | None, expect: str | None) -> int:
    """`cdip pin NAME [-o PATH] [--expect VALUE]`: write the test and its bundle; say where."""
    from .export import export, file_sha256

    expected = _expected_code(expect) if expect is not None else None
    entry = store.find(name)
    if entry.problem:
        raise CkptError(f"checkpoint {entry.id} cannot be pinned: {printable(entry.problem)}")
    test = _test_path(output, entry.name)
    bundle = test[: -len(".py")] + ".ckpt"
    for path in (test, bundle):
        if os.path.lexists(path):
            raise CkptError(f"{printable(path)} already exists: nothing was written",
                            hint="remove it, or choose another file with -o PATH")
    detail = _recorded(store, entry)
    script = _script(detail, test)
    export([entry], bundle)
    try:
        with open(test, "x", encoding="utf-8") as stream:
            stream.write(pinned_test_text(entry, os.path.basename(bundle), file_sha256(bundle),
                                          expected, script))
    except OSError as exc:
        os.unlink(bundle)
        raise CkptError(f"cannot write {printable(test)}: {exc.strerror}") from exc
    print(printable(f"pinned {entry.name} (id {entry.id}) as {test}, replaying {bundle}"))
    print("run it with: python -m pytest " + printable(test))
    print("commit both files: the test trusts the bundle whose SHA-256 it pins")
    return EXIT_OK


def _recorded(store: Store, entry: Entry) -> CallDetail:
    """The checkpoint's call detail, from its verified header."""
    from .fileformat import read_headers
    from .header import CallDetail

    return CallDetail.from_json(read_headers(entry.call_path, store.reading_key())[1])


def _script(detail: CallDetail, test: str) -> str | None:
    """Where the function's script is from the test's directory, if it was defined in one.

    A module is imported by its name, from pytest's `sys.path`; a script (run as
    `__main__`) by its path, which is the checkout's wherever the checkout is.
    Said (on stderr) when the function has no definition to import at all.
    """
    from _ckpt_runner.resolve import saved_copy_note  # type: ignore[import-untyped]

    location = detail.location
    note = saved_copy_note(location._asdict(), list(detail.metadata.get("argv", [])))
    if note is not None:
        print(printable(f"{note}: the pinned test replays that copy, so it will not see a fix"),
              file=sys.stderr)
    if detail.metadata.get("arguments_from_locals") is True:  # `ckpt run`, the excepthooks
        print(printable(f"note: {location.qualname} was saved from the crash's stack: the pinned "
                        "call's arguments are its parameters' values at the error"),
              file=sys.stderr)
    if not location.main or location.module != "__main__" or not location.file:
        return None
    return os.path.relpath(location.file, os.path.dirname(os.path.abspath(test)))


def _expected_code(text: str) -> str:
    """`--expect TEXT` as the test's code for it: its repr, or `literal_eval(TEXT)`.

    The repr when it reads back as the same value (`-1.0`, `'done'`), else the text
    itself, evaluated when the test runs (a float too large, `1e999`, has the repr
    `inf`, which is no Python literal).

    Raises:
        CkptError: `text` is not a Python literal.
    """
    import ast

    error: tuple[type[BaseException], ...] = (
        ValueError, SyntaxError, TypeError, MemoryError, RecursionError)
    try:
        value = ast.literal_eval(text)
    except error as exc:
        raise CkptError(f"--expect {printable(text)}: not a Python literal",
                        hint="give a number, a string in quotes, True, None, a list, a "
                             "dict... e.g. --expect 3.5 or --expect \"'done'\"") from exc
    try:
        code = repr(value)
        if ast.literal_eval(code) == value:
            return code
    except error:
        pass
    return f"literal_eval({text!r})"


def _test_path(output: str | None, name: str) -> str:
    """The test file: -o PATH (a .py file, or a directory), else tests/ if there is one."""
    default = f"test_pin_{_identifier(name)[:80]}.py"  # a file name has at most 255 bytes
    if output is None:
        output = os.path.join("tests", default) if os.path.isdir("tests") else default
    elif os.path.isdir(output):
        output = os.path.join(output, default)
    elif output.endswith(os.sep):
        raise CkptError(f"-o {printable(output)}: no such directory")
    if not os.path.basename(output).endswith(".py"):
        raise CkptError(f"-o {printable(output)}: a test file's name ends in .py",
                        hint=f"e.g. -o tests/{default}")
    if not os.path.isdir(os.path.dirname(output) or "."):
        raise CkptError(f"-o {printable(output)}: its directory does not exist")
    return output


def _identifier(name: str) -> str:
    """`name` as a Python identifier's tail: pipeline.step -> pipeline_step."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "checkpoint"


def pinned_test_text(entry: Entry, bundle: str, sha256: str, expected: str | None,
                     script: str | None = None) -> str:
    """The text of the test file; `expected`: the code of the value it must return, if any.

    Everything taken from the checkpoint (its name, id, exception) is written as a
    string literal by `repr`, never into the docstring or a comment: a name or a
    message holding quotes or newlines cannot become code.
    """
    then = "returns EXPECTED" if expected is not None else "no longer raises"
    error = entry.error_summary.exception if entry.error_summary is not None else None
    raised = f"{error.type}: {error.message}" if error is not None else None
    lines = [
        '"""A regression test written by `cdip pin` from the checkpoint CHECKPOINT of NAME.',
        "",
        "The call RAISED at capture. This test replays it from BUNDLE, the file next to",
        f"this one, with the code as it is now, and asserts that it {then}.",
        "",
        "Trust: the bundle is loaded without your ckpt key (it was signed by whoever",
        "pinned it): this file pins its SHA-256, and the repository that holds both",
        "vouches for them, as it does for any code it runs. Review a change to either.",
        '"""',
        "",
        *(["from ast import literal_eval"] if expected and expected.startswith("literal_eval(")
          else []),
        "from pathlib import Path",
        "",
        "from ckpt.pin import replay_pinned",
        "",
        f"NAME = {entry.name!r}",
        f"CHECKPOINT = {entry.id!r}",
        f"RAISED = {raised!r}",
        f"BUNDLE = Path(__file__).with_name({bundle!r})",
        f"SHA256 = {sha256!r}",
    ]
    if script is not None:  # a script is found from here, in whichever checkout this is
        lines.append(f"SCRIPT = Path(__file__).parent / {script!r}")
    if expected is not None:
        lines.append(f"EXPECTED = {expected}")
    lines += ["", "", f"def test_{_identifier(entry.name)}_{_identifier(entry.id)}():",
              "    result = replay_pinned(BUNDLE, SHA256, CHECKPOINT"
              + (", script=SCRIPT)" if script is not None else ")")]
    lines.append("    assert result == EXPECTED" if expected is not None
                 else "    del result  # it returned: it no longer raises")
    return "\n".join(lines) + "\n"


def replay_pinned(bundle: str | os.PathLike[str], sha256: str, checkpoint_id: str,
                  script: str | os.PathLike[str] | None = None) -> Any:
    """Replay a pinned checkpoint in this process: today's code, its saved arguments.

    `script`: where the script that defined the function is now (a function of a
    module is imported by its name).

    Returns what the call returns (a coroutine run to its end, a generator's values
    as a list); what it raises propagates, with its own traceback.

    Raises:
        CkptError: the bundle is not the one pinned, is damaged, or the function
            cannot be found or called with the saved arguments.
    """
    from pathlib import Path

    from .bundle import open_bundle

    path = Path(bundle)
    with tempfile.TemporaryDirectory(prefix="ckpt-pin-") as workdir:
        # What is opened is what was hashed: a private copy, read once, never the file
        # in the checkout again (which could be swapped in between).
        copy, store = Path(workdir) / "pinned.ckpt", Path(workdir) / "store"
        if _copy_hashed(path, copy) != sha256:
            raise CkptError(f"{printable(path)} is not the bundle this test pins (its SHA-256 "
                            "differs): refused unread",
                            hint="restore the committed file, or pin the checkpoint again")
        store.mkdir(mode=0o700)  # the bundle's parts carry the store's file names: a store
        open_bundle(copy, store)
        function, args, kwargs = _prepared(str(store), checkpoint_id,
                                           None if script is None else os.fspath(script))
    return _call_uncaptured(function, args, kwargs)


def _call_uncaptured(function: Callable[..., Any], args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
    """The call, drained, with capture off: as a replay, it saves nothing (no store, no key)."""
    from .decorator import disable, enable, is_enabled

    was_enabled = is_enabled()
    disable()
    try:
        return _drain(function(*args, **kwargs))
    finally:
        if was_enabled:
            enable()


def _copy_hashed(path: Path, copy: Path) -> str:
    """Copy the regular file `path` to the new file `copy`; the SHA-256 of what was copied.

    Raises:
        CkptError: there is no regular file at `path` (a FIFO is refused, never waited on).
    """
    import stat

    try:
        source = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise CkptError(f"no bundle at {printable(path)}: {exc.strerror}") from exc
    digest = hashlib.sha256()
    with open(source, "rb") as reading:
        if not stat.S_ISREG(os.fstat(source).st_mode):
            raise CkptError(f"no bundle at {printable(path)}: not a regular file")
        os.set_blocking(source, True)
        with open(copy, "xb") as writing:
            while chunk := reading.read(_CHUNK):
                digest.update(chunk)
                writing.write(chunk)
    return digest.hexdigest()


def _prepared(store_path: str, checkpoint_id: str, script: str | None,
              ) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
    """The function as the code defines it now, and the saved arguments bound to it."""
    # the replay child's own resolution of scripts and modules, installed with ckpt
    from _ckpt_runner.resolve import (
        Scripts,
        find_function,
        import_target,
        saved_copy,
        saved_copy_note,
    )

    from . import script_classes
    from .checkpoint import unpickle_checkpoint, verify_checkpoint
    from .store import Store

    verified = verify_checkpoint(Store(store_path, trust=True).find(checkpoint_id), trust=True)
    detail = verified.call_detail
    location = detail.location._asdict()
    remap = _moved(location.get("file"), script)
    if location.get("file"):
        location["file"] = remap(location["file"])
    scripts = Scripts(remap)
    script_classes.find_scripts_with(scripts.find)
    note = saved_copy_note(location, list(detail.metadata.get("argv", [])))
    if note is None and not location.get("main"):
        _importable(location["module"], location["qualname"])
    module = import_target(location, scripts) if note is None else None
    checkpoint = unpickle_checkpoint(verified)
    if module is not None:
        function = find_function(location, module, skipped=bool(scripts.notes))
    else:
        print(f"ckpt: {note}", file=sys.stderr)
        function = saved_copy(location["qualname"], lambda: checkpoint.saved_function)
    binding = checkpoint.bind(function)
    for change in binding.changes:
        print(f"ckpt: the parameters of {location['qualname']} changed: {change}",
              file=sys.stderr)
    if binding.missing:
        raise CkptError(binding.refusal(checkpoint.name),
                        hint="give the new parameter a default, or pin the checkpoint again")
    return function, binding.args, binding.kwargs


def _importable(module: str, qualname: str) -> None:
    """Say so when `module` is not on pytest's `sys.path` (the recorded path is not used).

    Raises:
        CkptError: it cannot be found.
    """
    import importlib.util

    try:
        found = importlib.util.find_spec(module)
    except ModuleNotFoundError as exc:  # a package above it is missing
        if not module.startswith(f"{exc.name}."):
            raise
        found = None
    if found is None:
        raise CkptError(f"cannot import {module}, which defines {qualname}, from this test's "
                        "sys.path", hint="run `python -m pytest` from the project's root (it "
                        "puts the current directory on sys.path), as for your other tests")


def _moved(recorded: str | None, now: str | None) -> Callable[[str], str]:
    """Recorded paths under the script's directory at capture, taken from under its own now."""
    if not recorded or not now:
        return lambda path: path
    then_dir, now_dir = os.path.dirname(recorded), os.path.dirname(os.path.abspath(now))

    def remap(path: str) -> str:
        if path == recorded:
            return os.path.abspath(now)
        if path.startswith(then_dir + os.sep):
            return os.path.join(now_dir, os.path.relpath(path, then_dir))
        return path

    return remap


def _drain(result: Any) -> Any:
    """A coroutine run to its end; a generator's values as a list; anything else as it is."""
    import inspect

    if inspect.iscoroutine(result):
        import asyncio

        return asyncio.run(result)
    if inspect.isasyncgen(result):
        import asyncio

        async def collect() -> list[Any]:
            return [item async for item in result]

        return asyncio.run(collect())
    if inspect.isgenerator(result):
        return list(result)
    return result
