"""Faults injected for real: a full disk, a file size limit, SIGKILL mid-write, bad files."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest
from conftest import BIN, run_python

import ckpt
from ckpt.fileformat import MAGIC, VERSION
from ckpt.keys import load_key

CDIP = str(BIN / "cdip")

SAVING_PROGRAM = """
import os, warnings, numpy, ckpt
warnings.simplefilter("always")

@ckpt.ckpt
def total(a):
    if a.sum() < 0:
        raise ValueError("negative")
    return float(a.sum())

print("result", total(numpy.ones(500_000)))  # 4 MB: more than the store can take
try:
    total(-numpy.ones(500_000))
except ValueError as exc:
    print("raised", exc, exc.__traceback__.tb_next is not None)
print("files", sorted(os.listdir(os.environ["PYCKPT_DIR"])))
"""
EXPECTED_OUTPUT = ["result 500000.0", "raised negative True", "files []"]


def cdip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CDIP, *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def test_a_full_disk_is_one_warning_per_call_and_leaves_nothing(store):
    store.mkdir()
    # a real file system that fills up: a 1 MiB tmpfs mounted over the store
    command = ["unshare", "-rm", "sh", "-c",
               f'mount -t tmpfs -o size=1m,mode=0700 tmpfs "{store}" && exec "$0" -c "$1"',
               sys.executable, SAVING_PROGRAM]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == EXPECTED_OUTPUT
    assert result.stderr.count("CkptWarning") == 2, result.stderr
    assert result.stderr.count("No space left on device") == 2


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_a_file_size_limit_is_one_warning_per_call_and_leaves_nothing(store):
    store.mkdir()
    load_key()  # the key exists already: only checkpoint writes hit the limit
    result = subprocess.run([sys.executable, "-c", SAVING_PROGRAM], capture_output=True,
                            text=True, timeout=60, preexec_fn=_limit_file_size)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == EXPECTED_OUTPUT
    assert result.stderr.count("CkptWarning") == 2, result.stderr
    assert result.stderr.count("File too large") == 2


def test_sigkill_in_the_middle_of_a_large_write(store, tmp_path):
    code = (
        "import time, numpy, ckpt, ckpt.blobwrite as ff\n"
        # each 8 MiB chunk waits 40 ms: over half a second to kill it in, on any disk
        # (the chunks of a blob are written on up to four threads at once)
        "chunk = ff._write_chunk\n"
        "ff._write_chunk = lambda *args: (time.sleep(0.04), chunk(*args))[1]\n"
        "ckpt.ckpt(lambda a: None)(numpy.ones(60_000_000))\n"  # 480 MB
        "print('finished')\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while True:
        partial = [p for p in (store.rglob(".tmp*") if store.exists() else [])
                   if p.stat().st_size > 20 << 20]  # a large buffer goes to the store's blobs
        if partial or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert partial, "the write was not caught in the middle"
    assert process.returncode == -signal.SIGKILL
    listed = cdip("info", "--json")
    assert listed.returncode == 0
    assert listed.stdout.strip() == "[]"
    assert ckpt.checkpoints() == []
    cleaned = cdip("gc")
    assert cleaned.returncode == 0
    assert "2 leftover file(s)" in cleaned.stdout  # the part begun, and its blob
    assert os.listdir(store) == []


def test_a_pickle_of_a_module_that_is_gone(tmp_path):
    (tmp_path / "gonemod.py").write_text("class Thing:\n    size = 3\n")
    (tmp_path / "job.py").write_text(
        "import importlib, ckpt\n"
        "@ckpt.ckpt\n"
        "def job(thing, n):\n"
        "    return n\n"
        "if __name__ == '__main__':\n"
        "    job(importlib.import_module('gonemod').Thing(), 1)\n")
    run_python("job.py", cwd=tmp_path, check=True)
    (tmp_path / "gonemod.py").unlink()
    shutil.rmtree(tmp_path / "__pycache__", ignore_errors=True)
    listed = cdip("info")
    assert listed.returncode == 0 and "job" in listed.stdout
    shown = cdip("info", "job")
    assert shown.returncode == 0 and "gonemod.Thing" in shown.stdout
    loaded = run_python("-c", "import ckpt; ckpt.load('job')", cwd=tmp_path)
    assert "argument 'thing' cannot be loaded: ModuleNotFoundError" in loaded.stderr
    replay = cdip("run", "job", "--mode", "run")
    assert replay.returncode == 2
    assert "argument 'thing' cannot be loaded" in replay.stderr
    assert "Traceback" not in replay.stderr


def test_a_newer_format_version_is_listed_and_refused(store):
    ckpt.ckpt(lambda x: x)(1)
    ckpt.ckpt(lambda x: x, name="newer")(2)
    newer = ckpt.checkpoints()[-1]
    data = Path(newer.call_path).read_bytes()
    # as a newer ckpt would write it, signed with our key
    body = data[: -32]
    body = MAGIC + bytes([VERSION + 1]) + body[len(MAGIC) + 1 :]
    import hmac

    Path(newer.call_path).write_bytes(body + hmac.new(load_key(), body, "sha256").digest())
    listed = cdip("info")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith(newer.id))
    newer_than_ours = f"format {VERSION + 1}, not {VERSION}"
    assert "BROKEN" in row and newer_than_ours in row
    assert len(listed.stdout.splitlines()) == 4  # store line, header, two rows
    replay = cdip("run", newer.id, "--mode", "run")
    assert replay.returncode == 2
    assert newer_than_ours in replay.stderr
    with pytest.raises(ckpt.CkptError):
        ckpt.load(newer.id)


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_bad_files_are_marked_and_the_rest_listed(store, damage):
    f = ckpt.ckpt(lambda x: x)
    f(1)
    f(2)
    good, bad = ckpt.checkpoints()
    data = Path(bad.call_path).read_bytes()
    Path(bad.call_path).write_bytes({"empty": b"", "truncated": data[:20],
                               "garbage": os.urandom(len(data))}[damage])
    listed = cdip("info")
    assert listed.returncode == 0 and good.id in listed.stdout
    assert "BROKEN" in next(line for line in listed.stdout.splitlines()
                            if line.startswith(bad.id))
    for command in (["info", bad.id], ["run", bad.id, "--mode", "run"]):
        result = cdip(*command)
        assert result.returncode == 2 and "Traceback" not in result.stderr
    with pytest.raises(ckpt.CkptError):
        ckpt.load(bad.id)
    assert ckpt.load(good.id).args == (1,)


def test_the_size_budget_removes_the_oldest_and_never_the_newest(store, monkeypatch):
    def save(name: str, nbytes: int) -> None:
        ckpt.ckpt(lambda a: None, name=name)(numpy.zeros(nbytes // 8))

    save("step0", 100_000)
    one = ckpt.checkpoints()[0].size
    budget = int(3.5 * one)  # room for three checkpoints of that size
    monkeypatch.setenv("PYCKPT_MAX_BYTES", str(budget))
    for index in range(1, 5):
        save(f"step{index}", 100_000)
        assert sum(entry.size for entry in ckpt.checkpoints()) <= budget
        assert ckpt.checkpoints()[-1].name == f"step{index}"
    assert [entry.name for entry in ckpt.checkpoints()] == ["step2", "step3", "step4"]
    monkeypatch.setenv("PYCKPT_MAX_BYTES", f"{budget / 1024}K")  # units are understood
    save("huge", 10 * budget)
    assert [entry.name for entry in ckpt.checkpoints()] == ["huge"]
    from ckpt.display import human_size

    listed = cdip("info")
    assert f"(1 checkpoint(s), {human_size(ckpt.checkpoints()[0].size)})" in listed.stdout


def test_retention_spares_a_call_still_running_and_leaves_no_orphan(store):
    @ckpt.ckpt(keep=1)
    def step(depth):
        if depth == 0:
            step(1)  # a newer call of the same name while this one still runs
            raise ValueError("outer failed")
        return depth

    with pytest.raises(ValueError):
        step(0)
    entries = ckpt.checkpoints()
    assert [e.trigger for e in entries] == ["error", "call"]  # the running one was spared
    assert ckpt.load(entries[0].id).arguments == {"depth": 0}
    assert ckpt.load(entries[0].id).exception.message == "outer failed"
    step(2)  # once it is done, retention applies as usual
    assert [ckpt.load(e.id).args for e in ckpt.checkpoints()] == [(2,)]
    assert not [p for p in os.listdir(store) if p.endswith(".error")]


def test_an_error_part_whose_call_part_was_removed_meanwhile_is_not_left(store, monkeypatch):
    from ckpt.store import Store

    write_part = Store.write_part

    def another_process_prunes_first(self, final, summary, detail, records):
        if final.endswith(".error"):  # the call part goes while the error part is written
            os.unlink(final.removesuffix(".error") + ".call")
        return write_part(self, final, summary, detail, records)

    monkeypatch.setattr(Store, "write_part", another_process_prunes_first)

    @ckpt.ckpt
    def step(x):
        raise ValueError(x)

    with pytest.raises(ValueError):
        step(1)
    assert os.listdir(store) == []  # no error part without its call part
