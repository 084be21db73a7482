"""Where the store is, `ckpt init`, retention and naming."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import run_python

import ckpt
from ckpt.location import find_store_path
from ckpt.store import Store, name_key

SAVE_ONE = "import ckpt\nckpt.ckpt(lambda x: x)(1)\n"


def saved_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".call", ".error"))


def test_rule_1_pyckpt_dir_wins(store, tmp_path):
    (tmp_path / ".pyckpt").mkdir()
    run_python("-c", SAVE_ONE, check=True)
    assert len(saved_files(store)) == 1
    assert saved_files(tmp_path / ".pyckpt") == []


def test_rule_2_nearest_pyckpt_upward(tmp_path, monkeypatch):
    monkeypatch.delenv("PYCKPT_DIR")
    (tmp_path / ".pyckpt").mkdir()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    run_python("-c", SAVE_ONE, cwd=deep, check=True)
    assert len(saved_files(tmp_path / ".pyckpt")) == 1


def test_rule_3_xdg_state_home(tmp_path, monkeypatch):
    monkeypatch.delenv("PYCKPT_DIR")
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    run_python("-c", SAVE_ONE, check=True)
    assert len(saved_files(state / "pyckpt")) == 1
    assert stat.S_IMODE((state / "pyckpt").stat().st_mode) == 0o700


def test_rule_3_falls_back_to_local_state_under_home(tmp_path, monkeypatch):
    monkeypatch.delenv("PYCKPT_DIR")
    monkeypatch.delenv("XDG_STATE_HOME")
    run_python("-c", SAVE_ONE, check=True)
    assert len(saved_files(tmp_path / "home" / ".local" / "state" / "pyckpt")) == 1


def test_store_is_resolved_at_save_not_at_import(tmp_path, monkeypatch):
    monkeypatch.delenv("PYCKPT_DIR")
    code = (
        "import os, ckpt\n"
        "f = ckpt.ckpt(lambda x: x)\n"
        "os.environ['PYCKPT_DIR'] = os.path.abspath('late')\n"
        "f(1)\n"
    )
    run_python("-c", code, check=True)
    assert len(saved_files(tmp_path / "late")) == 1


def test_files_are_private(store):
    ckpt.ckpt(lambda x: x)(1)
    for path in saved_files(store):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_init_creates_a_store_kept_out_of_git(cli, tmp_path):
    result = cli("init")
    assert result.returncode == 0, result.stderr
    store = tmp_path / ".pyckpt"
    assert f"created {store}" in result.stdout
    assert (store / "CACHEDIR.TAG").read_text().startswith(
        "Signature: 8a477f597d28d172789f06886806bc55")
    again = cli("init")
    assert again.returncode == 0
    assert "already exists" in again.stdout
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    run_python("-c", SAVE_ONE, env={"PYCKPT_DIR": ""}, check=True)
    assert len(saved_files(store)) == 1
    status = subprocess.run(["git", "-C", str(tmp_path), "status", "--porcelain",
                             "--untracked-files=all"], capture_output=True, text=True,
                            check=True).stdout
    assert ".pyckpt" not in status


def test_find_store_path_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCKPT_DIR", str(tmp_path / "x"))
    assert find_store_path() == str(tmp_path / "x")


def test_name_keys_are_safe_and_distinct():
    names = ["a/b", "a_b", "../../etc/passwd", "tests/test_x.py::test_y[1-2]", "x" * 300, "é"]
    keys = [name_key(name) for name in names]
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert "/" not in key and "~" not in key and len(key) < 100
        assert not key.startswith(".")


def test_ids_are_unique_and_accepted_by_prefix(store):
    f = ckpt.ckpt(lambda x: x)
    for i in range(20):
        f(i)
    entries = ckpt.checkpoints()
    assert len({entry.id for entry in entries}) == len(entries) == 5
    newest = entries[-1]
    assert Store(store).find(newest.id[:6]).id == newest.id
    assert ckpt.load(newest.id[:6]).args == (19,)


def test_a_name_finds_its_newest_even_past_a_file_under_the_same_key(store):
    ckpt.ckpt(lambda x: x, name="a", keep=10)(1)
    ckpt.ckpt(lambda x: x, name="a", keep=10)(2)
    ckpt.ckpt(lambda x: x, name="b")(3)
    *_, newest_a, b = ckpt.checkpoints()
    # b's file, renamed to a's name key and to the newest time: as a key collision would be
    stamp = f"{b.stamp + 1:020d}"
    os.rename(b.call_path, os.path.join(store, f"{name_key('a')}~{stamp}~{b.id}.call"))
    found = Store(store).find("a")
    assert found.id == newest_a.id and found.name == "a"
    # ... and the renamed file is caught: its signed name and time are not its file name's
    renamed = Store(store).find(b.id)
    assert renamed.problem and "renamed" in renamed.problem and renamed.summary is None


def test_unknown_name_is_a_clear_error(store):
    ckpt.ckpt(lambda x: x)(1)
    with pytest.raises(ckpt.CkptError, match="no checkpoint named 'nope'"):
        ckpt.load("nope")


def test_empty_store_is_a_clear_error_for_load(store):
    with pytest.raises(ckpt.CkptError, match="no checkpoints"):
        ckpt.load()


def test_fsync_opt_in_still_writes(store, monkeypatch):
    monkeypatch.setenv("PYCKPT_FSYNC", "1")
    ckpt.ckpt(lambda x: x)(5)
    assert ckpt.load().args == (5,)


def test_no_temporary_files_remain(store):
    f = ckpt.ckpt(lambda x: x)
    for i in range(3):
        f(i)
    assert not [p for p in os.listdir(store) if p.startswith(".tmp")]


def test_keep_reads_back_none_of_the_checkpoints_this_process_signed(store, monkeypatch):
    from ckpt import retention

    reads = []
    real = retention.read_summary
    monkeypatch.setattr(retention, "read_summary", lambda *a: reads.append(a) or real(*a))
    f = ckpt.ckpt(lambda x: x, name="mine", keep=2)
    for i in range(5):
        f(i)
    assert [entry.args for entry in map(ckpt.load, [e.id for e in ckpt.checkpoints()])] == [
        (3,), (4,)]
    assert reads == []  # each was known to verify from its writing, not read again


def test_a_checkpoint_signed_here_then_replaced_by_a_forgery_no_longer_counts(store):
    f = ckpt.ckpt(lambda x: x, name="a", keep=2)
    f(1)
    f(2)
    first, second = ckpt.checkpoints()
    # the second's file replaced by a forgery of the same size (its summary altered)
    data = bytearray(Path(second.call_path).read_bytes())
    data[data.index(b'"call"') + 1] ^= 0x20
    forged = store / "forged"
    forged.write_bytes(bytes(data))
    os.replace(forged, second.call_path)
    f(3)  # keep=2: the forgery must not count, so the first stays with the third
    assert os.path.exists(first.call_path) and os.path.exists(second.call_path)
    assert [entry.id for entry in ckpt.checkpoints() if not entry.problem] == [
        first.id, ckpt.checkpoints()[-1].id]


def test_part_sizes_are_measured_again_at_each_listing_and_links_weigh_nothing(store):
    ckpt.ckpt(lambda x: x)(1)
    (call,) = saved_files(store)
    listed = Store(store)
    listed.listdir()
    before = listed.part_size(call.name)
    assert before == call.stat().st_size
    with open(call, "ab") as grown:
        grown.write(b"x" * 100)
    listed.listdir()  # a new listing measures again
    assert listed.part_size(call.name) == before + 100
    link = store / ("link" + call.name)
    link.symlink_to(call)
    assert listed.part_size(link.name) is None
    assert listed.part_size("nothing~1~ab.call") is None


def test_a_prune_that_frees_no_blob_reads_no_other_part_and_still_settles_leftovers(
        store, monkeypatch):
    import numpy

    import ckpt.blobs
    from ckpt import retention

    ckpt.ckpt(lambda x: x, name="big")(numpy.full(1 << 18, 1.0))  # 2 MiB: a blob, held
    (blob,) = ckpt.blobs.Blobs(str(store)).ids()
    asked = []
    real = retention.referenced
    monkeypatch.setattr(retention, "referenced", lambda s: asked.append(s) or real(s))
    small = ckpt.ckpt(lambda x: x, name="small", keep=1)
    for i in range(3):
        small(i)  # each prune deletes the one before, which held no blob
    assert asked == []  # no header of the store read for it (it read them all, every save)
    path = store / "blobs" / blob[:16] / blob
    os.rename(path, path.with_name(f".gone-{blob}-0123"))  # a remover set it aside and died
    monkeypatch.setattr(ckpt.blobs, "_ABANDONED", -1.0)  # a minute ago
    small(3)
    assert path.exists()  # that prune still put the held blob back
    assert ckpt.load("big").args[0].sum() == 1 << 18
