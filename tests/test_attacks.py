"""The review's attacks on the read path, reproduced for real: each one must fail to act.

A forged checkpoint (signed under an attacker's key) planted in a store or shipped
in a cloned repository, modules planted where `cdip run` is typed or where a
checkpoint says it was taken, escape sequences in names and messages, hostile
files in the store, and saves killed half-way.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BIN, run_python

import ckpt
from ckpt.fileformat import (
    _U32,
    MAGIC,
    PartWriter,
    _label_tag,
    key_id,
    read_part,
)
from ckpt.keys import key_path, load_key
from ckpt.store import Store, legacy_name_key, name_key
from ckpt.supervise import RUNNER

CDIP = str(BIN / "cdip")


def cdip(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CDIP, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=cwd, env={**os.environ, **(env or {})})


def attacker_key(tmp_path: Path) -> Path:
    key = tmp_path / "attacker" / "key"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    return key


def forge(tmp_path: Path, store: Path, key: Path | None = None, **metadata: object) -> str:
    """A checkpoint of `step(data)` signed under `key` (an attacker's), its metadata rewritten."""
    key = key or attacker_key(tmp_path)
    module = tmp_path / "victim"
    module.mkdir(exist_ok=True)
    before = set(store.glob("*.call"))
    (module / "victimstep.py").write_text(
        "import ckpt\n\n@ckpt.ckpt\ndef step(data):\n    return len(data)\n")
    run_python("-c", "import numpy, victimstep; victimstep.step(numpy.arange(5))",
               cwd=module, env={"PYCKPT_KEY_FILE": str(key), "PYCKPT_DIR": str(store)},
               check=True)
    (path,) = set(store.glob("*.call")) - before
    part = read_part(str(path), None)
    part.detail["metadata"].update(metadata)
    with open(path, "wb") as stream:
        writer = PartWriter(stream, key.read_bytes())
        writer.write_header(part.summary, part.detail)
        for record in part.records:
            writer.write_record(record.inband, record.buffers)
        writer.finish()
    return str(part.summary["id"])


def planted(directory: Path, names: list[str], marker: Path) -> None:
    """Modules that record, when imported, that they ran."""
    for name in names:
        (directory / name).write_text(
            f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\n")


@pytest.fixture
def own_key() -> bytes:
    return load_key()  # the victim has saved before: a key of their own exists


def test_a_cloned_repository_cannot_choose_the_interpreter(tmp_path, monkeypatch, own_key):
    clone = tmp_path / "clone"
    store = clone / ".pyckpt"
    store.mkdir(parents=True, mode=0o700)
    marker = tmp_path / "ran"
    tools = clone / "tools"
    tools.mkdir()
    fake = tools / "python3"
    fake.write_text(f"#!/bin/sh\necho attacker >> {marker}\nexec {sys.executable} \"$@\"\n")
    fake.chmod(0o755)
    checkpoint_id = forge(tmp_path, store, executable=str(fake))
    monkeypatch.delenv("PYCKPT_DIR")  # the store is the clone's .pyckpt, found upward
    replay = cdip("run", "--mode", "run", cwd=clone)
    assert replay.returncode == 2, replay.stderr
    assert "signed under another key" in replay.stderr
    listed = cdip("info", cwd=clone)
    assert listed.returncode == 0 and "BROKEN" in listed.stdout
    assert checkpoint_id in listed.stdout and "victimstep" not in listed.stdout
    assert not marker.exists(), "the checkpoint's interpreter ran"


def test_the_child_verifies_before_it_restores_cwd_and_sys_path(tmp_path, store, own_key):
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "ran"
    planted(evil, ["numpy.py", "hmac.py", "victimstep.py", "cloudpickle.py"], marker)
    checkpoint_id = forge(tmp_path, store, cwd=str(evil), path=[str(evil)])
    options = json.dumps({"store": str(store), "id": checkpoint_id, "mode": "run"})
    # the child alone, as `cdip run` starts it: it must refuse by itself
    child = subprocess.run([sys.executable, *RUNNER, options], capture_output=True, text=True,
                           timeout=60, cwd=tmp_path)
    assert child.returncode == 2, child.stderr
    assert "signed under another key" in child.stderr
    assert not marker.exists(), marker.read_text()
    assert cdip("run", checkpoint_id, "--mode", "run").returncode == 2
    assert not marker.exists()


def test_modules_where_cdip_run_is_typed_never_run(tmp_path, store):
    work = tmp_path / "work"
    work.mkdir()
    (work / "steps.py").write_text(
        "import ckpt, numpy\n\n@ckpt.ckpt\ndef step(data):\n    return int(data.sum())\n")
    run_python("-c", "import numpy, steps; steps.step(numpy.arange(4))", cwd=work, check=True)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    marker = tmp_path / "ran"
    names = ["json.py", "hmac.py", "pickle.py", "struct.py", "_ckpt_runner.py", "ckpt.py",
             "numpy.py", "signal.py", "functools.py", "collections.py", "re.py", "os.py"]
    planted(downloads, names, marker)
    replay = cdip("run", "step", "--mode", "run", cwd=downloads)
    assert replay.returncode == 0, replay.stderr
    assert "step returned 6" in replay.stdout
    assert not marker.exists(), f"ran from the current directory: {marker.read_text()}"


ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31m\u202e"


def test_escape_sequences_never_reach_the_terminal(tmp_path, store):
    script = tmp_path / "hostile.py"
    script.write_text(
        "import ckpt\n\n"
        f"@ckpt.ckpt(name={'evil' + ESCAPES!r})\n"
        "def step(label):\n"
        f"    secret = {ESCAPES!r}\n"
        f"    raise ValueError({'boom' + ESCAPES + chr(10) + 'ffff  fake  call  row'!r})\n\n"
        "try:\n"
        f"    step({ESCAPES!r})\n"
        "except ValueError:\n    pass\n")
    run_python(str(script), check=True)
    outputs = []
    listed = cdip("info")
    assert listed.returncode == 0
    assert len(listed.stdout.splitlines()) == 3  # the store, the header, one row: no fake row
    outputs.append(listed.stdout)
    (row,) = json.loads(cdip("info", "--json").stdout)
    assert row["name"] == "evil" + ESCAPES  # JSON stays exact (and valid)
    shown = cdip("info", row["id"])
    assert shown.returncode == 0, shown.stderr
    outputs.append(shown.stdout)
    replay = cdip("run", row["id"], "--mode", "run")
    assert replay.returncode == 1
    outputs += [replay.stdout, replay.stderr]  # the replay's own traceback included
    removed = cdip("rm", row["id"])
    assert removed.returncode == 0
    outputs.append(removed.stdout)
    for output in outputs:
        assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output
    assert "\\x1b[2J" in listed.stdout  # shown, escaped: not hidden either


def test_a_save_killed_half_way_is_never_listed_as_a_valid_checkpoint(tmp_path, store):
    script = tmp_path / "loop.py"
    script.write_text(
        "import ckpt, numpy\n\n"
        "@ckpt.ckpt(active=False, keep=100)\n"
        "def step(data):\n    raise ValueError('bad data')\n\n"
        "data = numpy.ones(4_000_000)\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    try:\n        step(data)\n    except ValueError:\n        pass\n")
    rng = random.Random(7)
    for _ in range(8):
        process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                   text=True)
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.05, 0.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
    entries = ckpt.checkpoints()
    assert entries, "nothing was saved at all"
    for entry in entries:
        if not entry.problem:
            assert entry.trigger == "error" and entry.error_summary.exception is not None
    assert cdip("gc").returncode == 0
    after = Store(store).entries()
    assert all(not entry.problem for entry in after)
    for entry in after:
        assert ckpt.load(entry.id).exception.message == "bad data"


def test_a_missing_key_is_reported_not_silently_replaced(store):
    ckpt.ckpt(lambda x: x, name="old")(1)
    old_id = key_id(load_key()).hex()
    os.unlink(key_path())
    listed = cdip("info")
    assert listed.returncode == 0 and "BROKEN" in listed.stdout
    assert "no checkpoint key" in listed.stdout
    ckpt.ckpt(lambda x: x, name="new")(2)  # a new key is made for new checkpoints...
    old, new = ckpt.checkpoints()
    assert new.problem is None
    assert old.problem == f"signed under another key ({old_id})"  # ...the old ones name theirs
    refused = cdip("run", old.id, "--mode", "run")
    assert refused.returncode == 2 and old_id in refused.stderr


def _raw_part(path: Path, summary: bytes, key: bytes) -> None:
    """A format-3 part whose summary is these exact bytes, correctly tagged."""
    head = bytearray(MAGIC + bytes([3]) + key_id(key)) + _U32.pack(len(summary)) + summary
    head += _label_tag(key, b"ckpt summary\x00", head)
    path.write_bytes(bytes(head) + b"\x00" * 64)


def test_hostile_files_in_the_store_never_hang_or_crash_anything(store, own_key):
    ckpt.ckpt(lambda x: x, name="good")(1)
    os.mkfifo(store / "fifo-0~00000000000000000001~aaaaaaaaaaaa.call")
    (store / "dir-0~00000000000000000002~bbbbbbbbbbbb.call").mkdir()
    (store / "link-0~00000000000000000003~cccccccccccc.call").symlink_to("/etc/passwd")
    (store / "huge-0~99999999999999999999~dddddddddddd.call").write_bytes(b"garbage")
    nested = b'{"id":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _raw_part(store / "deep-0~00000000000000000004~eeeeeeeeeeee.call", nested, own_key)
    malformed = json.dumps({"part": "error", "id": "ffffffffffff", "name": "m",
                            "exception": "not an object"}).encode()
    _raw_part(store / f"{name_key('m')}~00000000000000000005~ffffffffffff.call", malformed,
              own_key)
    for command in (["info"], ["info", "--json"], ["rm", "good"]):
        result = cdip(*command, timeout=20)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    ckpt.ckpt(lambda x: x, name="good")(1)
    listed = cdip("info").stdout
    assert listed.count("BROKEN") == 6
    for reason in ("not a regular file", "symbolic link", "unreadable header",
                   "malformed header"):
        assert reason in listed
    assert [e.name for e in ckpt.checkpoints() if not e.problem] == ["good"]
    collected = cdip("gc", timeout=20)
    assert collected.returncode == 0, collected.stderr
    assert "removed 3 checkpoint(s)" in collected.stdout and "kept 3" in collected.stdout
    # what is not ours to judge stays: the FIFO, the directory, the link
    assert cdip("info", timeout=20).stdout.count("BROKEN") == 3
    assert stat.S_ISFIFO(os.lstat(store / "fifo-0~00000000000000000001~aaaaaaaaaaaa.call")
                         .st_mode)
    assert Path("/etc/passwd").exists()


def _colliding_names() -> tuple[str, str]:
    seen: dict[str, str] = {}
    for number in range(2_000_000):
        name = f"step{number}"
        key = legacy_name_key(name).rpartition("-")[2]
        if key in seen:
            return seen[key], name
        seen[key] = name
    raise AssertionError("no 32-bit collision found")


def test_names_that_collided_in_32_bits_keep_their_own_checkpoints(store):
    first, second = _colliding_names()
    assert name_key(first) != name_key(second)
    for name in (first, second, first, second):
        ckpt.ckpt(lambda x: x, name=name, keep=2)(1)
    names = [entry.name for entry in ckpt.checkpoints()]
    assert names.count(first) == 2 and names.count(second) == 2


def test_renaming_an_old_checkpoint_does_not_make_it_the_newest(store):
    f = ckpt.ckpt(lambda x: x, name="step")
    f("old")
    f("new")
    old, new = ckpt.checkpoints()
    renamed = old.call_path.replace(f"~{old.stamp:020d}~", f"~{new.stamp + 1:020d}~")
    os.rename(old.call_path, renamed)
    assert ckpt.load().args == ("new",)
    assert ckpt.load("step").args == ("new",)
    listed = {entry.id: entry.problem for entry in ckpt.checkpoints()}
    assert "renamed" in listed[old.id]


def test_planted_files_push_no_checkpoint_out_of_retention_or_the_budget(store, own_key,
                                                                        tmp_path):
    store.mkdir(mode=0o700)
    junk_key = name_key("alpha")
    for number in range(5):  # far-future times, under the name's (public) key, not signed
        junk = store / f"{junk_key}~9999999999999999999{number}~00000000000{number}.call"
        junk.write_bytes(b"PYCKPT\x00\x03ABCDEFGH\x02\x00\x00\x00{}" + bytes(32))
    big = tmp_path / "elsewhere"
    with open(big, "wb") as stream:
        stream.truncate(3 << 30)  # 3 GiB, sparse
    (store / "zzz-0~99999999999999999999~ffffffffffff.call").symlink_to(big)
    step = ckpt.ckpt(lambda x: x, name="alpha", keep=3)
    for value in range(4):
        step(value)
    kept = [entry.summary for entry in ckpt.checkpoints() if not entry.problem]
    assert len(kept) == 3  # the newest three of the user's own, whatever else is there
    assert ckpt.load("alpha").args == (3,)


@pytest.mark.parametrize("pid", ["99999999999999999999", "\u00b2", "12a"])
def test_crafted_leftover_names_never_crash_gc(store, own_key, pid):
    from ckpt.store import _HOST

    ckpt.ckpt(lambda x: x, name="good")(1)
    (store / f".tmp-{pid}-abcd-{_HOST}@").write_bytes(b"?")
    collected = cdip("gc")
    assert collected.returncode == 0, collected.stderr


def test_a_recorded_interpreter_someone_else_could_have_put_there_is_not_run(tmp_path, store):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o1777)  # like /tmp
    venv = shared / "venv"  # the user's venv, deleted since; another user made this one
    (venv / "bin").mkdir(parents=True)
    marker = tmp_path / "ran"
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\necho attacker >> {marker}\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    for path in (venv, venv / "bin", python):
        os.chown(path, 65534, 65534)
    own = tmp_path / "own-key"
    own.write_bytes(load_key())
    own.chmod(0o600)
    checkpoint_id = forge(tmp_path, store, key=own, executable=str(python))
    replay = cdip("run", checkpoint_id, "--mode", "run")
    assert replay.returncode == 0, replay.stderr
    assert "not the recorded" in replay.stderr and "uid 65534" in replay.stderr
    assert not marker.exists()


def test_trust_never_picks_a_forged_checkpoint_by_name(tmp_path, store, own_key):
    work = tmp_path / "work"
    work.mkdir()
    (work / "victimstep.py").write_text(
        "import ckpt\n\n@ckpt.ckpt\ndef step(data):\n    return 'the users own'\n")
    run_python("-c", "import victimstep; victimstep.step([1])", cwd=work, check=True)
    forged = forge(tmp_path, store)  # newer, another key, the same name
    replay = cdip("run", "--trust", "step", "--mode", "run", cwd=work)
    assert replay.returncode == 0, replay.stderr
    assert "returned 'the users own'" in replay.stdout
    by_id = cdip("run", "--trust", forged, "--mode", "run")  # named by its id: vouched for
    assert "--trust: loading without checking the signature" in by_id.stderr


def test_a_checkpoint_cannot_show_one_function_and_replay_another(tmp_path, store):
    marker = tmp_path / "ran"
    ckpt.ckpt(lambda command: command, name="step")(f"touch {marker}")
    (path,) = store.glob("*.call")
    part = read_part(str(path), None)
    part.detail["function"].update(module="subprocess", qualname="getoutput")
    with open(path, "wb") as stream:  # signed under the user's own key, as if they had
        writer = PartWriter(stream, load_key())
        writer.write_header(part.summary, part.detail)
        for record in part.records:
            writer.write_record(record.inband, record.buffers)
        writer.finish()
    replay = cdip("run", "step", "--mode", "run")
    assert replay.returncode == 2 and "another function" in replay.stderr
    assert not marker.exists()


def test_a_planted_git_fifo_never_hangs_the_users_program(tmp_path, store):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    dotgit = shared / ".git"  # another user's, above the user's script
    dotgit.mkdir()
    os.mkfifo(dotgit / "HEAD")
    for path in (dotgit, dotgit / "HEAD"):
        os.chown(path, 65534, 65534)
    work = shared / "victim"
    work.mkdir()
    (work / "job.py").write_text(
        "import ckpt\n\n@ckpt.ckpt(active=False)\ndef step(x):\n    return 1 / x\n\n"
        "try:\n    step(0)\nexcept ZeroDivisionError:\n    print('program continued')\n")
    result = subprocess.run([sys.executable, "job.py"], cwd=work, capture_output=True,
                            text=True, timeout=30)
    assert result.stdout == "program continued\n", result.stderr
    assert ckpt.load("step").metadata["git_commit"] is None


def test_a_checkout_planted_above_the_user_never_supplies_the_code(tmp_path, store):
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "mod.py").write_text(
        "import ckpt\n\n@ckpt.ckpt(active=False)\ndef step(x):\n    return 1 / x\n")
    run_python("-c", "import pkg.mod as m\ntry:\n    m.step(0)\nexcept ZeroDivisionError:\n"
               "    pass", cwd=project, check=True)
    shared = tmp_path / "shared"  # like /tmp: another user plants a checkout there
    (shared / ".git").mkdir(parents=True)
    (shared / "pkg").mkdir()
    (shared / "pkg" / "__init__.py").write_text("")
    marker = tmp_path / "ran"
    (shared / "pkg" / "mod.py").write_text(
        f"open({str(marker)!r}, 'w').write('planted')\n\ndef step(x):\n    return 'planted'\n")
    for path in (shared / ".git", shared / "pkg", shared / "pkg" / "__init__.py",
                 shared / "pkg" / "mod.py"):
        os.chown(path, 65534, 65534)
    shared.chmod(0o1777)
    work = shared / "mine"  # the user's own directory below it, no .git of its own
    work.mkdir()
    replay = cdip("run", "step", "--mode", "run", cwd=work)
    assert replay.returncode == 1, replay.stderr  # their own code: still dividing by zero
    assert "ZeroDivisionError" in replay.stdout + replay.stderr
    assert not marker.exists()


def test_a_planted_legacy_file_is_not_parsed_before_it_verifies(store, own_key):
    import struct

    ckpt.ckpt(lambda x: x, name="good")(1)
    detail = b"[" + b"[]," * 20_000_000 + b"[]]"  # 60 MB that would take seconds and GiBs
    body = MAGIC + bytes([2]) + struct.pack("<I", 2) + b"{}" + struct.pack("<I", len(detail))
    body += detail
    body += b"CKPTEND\x00" + struct.pack("<Q", len(body))
    (store / "old-0~00000000000000000001~aaaaaaaaaaaa.call").write_bytes(body + bytes(32))
    started = time.monotonic()
    listed = cdip("info", timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert time.monotonic() - started < 10
    assert "does not verify" in listed.stdout


def test_a_file_planted_with_a_checkpoints_id_neither_hides_nor_takes_it(store, own_key):
    @ckpt.ckpt(active=False)
    def step(x):
        return 1 / x

    with pytest.raises(ZeroDivisionError):
        step(0)
    (entry,) = ckpt.checkpoints()
    for number in range(10):  # whatever order the directory lists them in
        (store / f"junk{number}-0~{entry.stamp:020d}~{entry.id}.call").write_bytes(b"junk")
    assert ckpt.load(entry.id).exception.type == "ZeroDivisionError"
    assert cdip("gc").returncode == 0
    assert ckpt.load(entry.id).exception.type == "ZeroDivisionError"  # gc took only junk


def test_whose_code_runs_is_said_before_it_runs(tmp_path, store):
    work = tmp_path / "work"
    work.mkdir()
    (work / "loud.py").write_text(
        "import sys, ckpt\nprint('IMPORTED', file=sys.stderr, flush=True)\n\n"
        "@ckpt.ckpt\ndef step(x):\n    return x\n")
    run_python("-c", "import loud; loud.step(1)", cwd=work, check=True)
    replay = cdip("run", "step", "--mode", "run")
    assert replay.returncode == 0, replay.stderr
    code_line = replay.stderr.index(f"code: {work / 'loud.py'} in {work}")
    assert code_line < replay.stderr.index("IMPORTED")
