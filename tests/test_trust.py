"""Authenticated checkpoints, the key file, and private stores."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, SAMPLES, run_python

import ckpt
from ckpt.keys import key_path, load_key
from ckpt.store import Store

CDIP = str(BIN / "cdip")


def cdip(*args: str, env: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CDIP, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=cwd)


@pytest.fixture
def failed(tmp_path: Path) -> ckpt.checkpoint.Entry:
    script = tmp_path / "pipeline.py"
    shutil.copy(SAMPLES / "pipeline.py", script)
    run_python(str(script), "2.0")
    return ckpt.checkpoints()[-1]


def flip_threshold(entry) -> None:
    data = bytearray(Path(entry.call_path).read_bytes())
    data[data.index(b"G" + struct.pack(">d", 2.0)) + 8] ^= 1
    Path(entry.call_path).write_bytes(bytes(data))


def test_a_flipped_bit_in_a_value_is_refused_everywhere(failed):
    flip_threshold(failed)
    with pytest.raises(ckpt.CkptError, match="does not verify"):
        ckpt.load(failed.id)
    shown = cdip("info", failed.id)
    assert shown.returncode == 2
    assert "does not verify" in shown.stderr and "--trust" in shown.stderr
    listed = cdip("info")
    assert listed.returncode == 0 and failed.id in listed.stdout
    replay = cdip("run", failed.id, "--mode", "run")
    assert replay.returncode == 2 and "cdip import" in replay.stderr


def test_trust_replays_it_once_deliberately(failed):
    flip_threshold(failed)
    result = cdip("run", failed.id, "--mode", "shell", "--trust",
                  "-c", "print(repr(threshold))")
    assert result.returncode == 0, result.stderr
    assert "2.0000000000000004" in result.stdout  # the damage, shown, not hidden
    assert "--trust: loading without checking the signature" in result.stderr


def test_a_flipped_bit_in_array_data_is_detected(store):
    numpy = pytest.importorskip("numpy")
    ckpt.ckpt(lambda data: None)(numpy.arange(100_000, dtype=numpy.float64))
    entry = ckpt.checkpoints()[-1]
    data = bytearray(Path(entry.call_path).read_bytes())
    data[data.index(numpy.float64(5000.0).tobytes()) + 3] ^= 0x10
    Path(entry.call_path).write_bytes(bytes(data))
    with pytest.raises(ckpt.CkptError, match="does not verify"):
        ckpt.load()


def test_another_users_key_is_refused(failed, tmp_path):
    other = {"XDG_CONFIG_HOME": str(tmp_path / "other-config")}
    result = run_python("-c", f"import ckpt; ckpt.load({failed.id!r})", env=other)
    assert result.returncode == 1
    assert "no checkpoint key" in result.stderr
    run_python("-c", "import ckpt; ckpt.ckpt(lambda: 0)()", env=other, check=True)
    refused = cdip("run", failed.id, "--mode", "run", env=other)
    assert refused.returncode == 2
    assert "signed under another key" in refused.stderr  # named as such, not "damaged"


def test_checkpoints_cannot_be_swapped_or_renamed(store):
    f = ckpt.ckpt(lambda x: x)
    f(1)
    f(2)
    first, second = ckpt.checkpoints()
    shutil.copy(first.call_path, second.call_path)  # a valid file, under another id
    with pytest.raises(ckpt.CkptError, match="renamed or swapped"):
        ckpt.load(second.id)
    assert ckpt.load(first.id).args == (1,)


def test_error_part_cannot_be_attached_to_another_call(store):
    @ckpt.ckpt
    def f(x):
        raise ValueError(x)

    for value in (1, 2):
        with pytest.raises(ValueError):
            f(value)
    first, second = ckpt.checkpoints()
    shutil.copy(first.error_path, second.error_path)
    # its signed summary names the first checkpoint: listing already tells
    assert "renamed or swapped" in Store(store).find(second.id).problem
    with pytest.raises(ckpt.CkptError, match="renamed or swapped"):
        ckpt.load(second.id)


def test_the_key_is_created_private_once(store):
    ckpt.ckpt(lambda: 0)()
    path = Path(key_path())
    assert path == Path(os.environ["XDG_CONFIG_HOME"]) / "pyckpt" / "key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(path.read_bytes()) == 32


def _create_key(_: int) -> bytes:
    from ckpt.keys import load_key as load

    return bytes(load())  # the key itself refuses to pickle (ckpt.keys.Key)


def test_concurrent_first_creation_gives_one_key(tmp_path, monkeypatch):
    # the default place, its folders missing too (a PYCKPT_KEY_FILE's folder must exist)
    monkeypatch.delenv("PYCKPT_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        keys = pool.map(_create_key, range(24))
    assert len(set(keys)) == 1
    assert os.listdir(tmp_path / "config" / "pyckpt") == ["key"]


def test_key_file_env_points_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCKPT_KEY_FILE", str(tmp_path / "ci-secret"))
    ckpt.ckpt(lambda: 0)()
    assert (tmp_path / "ci-secret").exists()
    assert ckpt.load().args == ()


@pytest.mark.parametrize("damage", ["group-readable", "other-user", "symlink", "directory",
                                    "short"])
def test_an_unsafe_key_file_is_refused(tmp_path, monkeypatch, damage):
    key = tmp_path / "key"
    monkeypatch.setenv("PYCKPT_KEY_FILE", str(key))
    load_key()
    if damage == "group-readable":
        key.chmod(0o640)
        expected = "readable by others"
    elif damage == "other-user":
        if os.geteuid() == 0:
            os.chown(key, 65534, 65534)
        else:
            monkeypatch.setattr(os, "getuid", lambda: os.geteuid() + 1)
        expected = "belongs to another user"
    elif damage == "symlink":
        real = tmp_path / "real"
        key.rename(real)
        key.symlink_to(real)
        expected = "it is a symbolic link"
    elif damage == "directory":
        key.unlink()
        key.mkdir()
        expected = "regular file"
    else:
        key.write_bytes(b"short")
        expected = "damaged"
    with pytest.raises(ckpt.CkptError, match=expected):
        load_key()
    # the decorator turns the same refusal into a warning, and the call goes on
    with pytest.warns(ckpt.CkptWarning):
        assert ckpt.ckpt(lambda: 7)() == 7


def test_a_group_writable_pyckpt_upward_is_not_used(tmp_path, monkeypatch):
    monkeypatch.delenv("PYCKPT_DIR")
    shared = tmp_path / ".pyckpt"
    shared.mkdir()
    shared.chmod(0o777)
    deep = tmp_path / "work"
    deep.mkdir()
    result = run_python("-c", "import ckpt; ckpt.ckpt(lambda: 0)()", cwd=deep)
    assert result.returncode == 0
    assert f"not using {shared}: it is writable by group or others" in result.stderr
    assert os.listdir(shared) == []
    fallback = Path(os.environ["XDG_STATE_HOME"]) / "pyckpt"
    assert len(os.listdir(fallback)) == 1


def test_a_pyckpt_of_another_user_is_not_used(tmp_path, monkeypatch):
    from ckpt.location import find_store_path

    monkeypatch.delenv("PYCKPT_DIR")
    theirs = tmp_path / ".pyckpt"
    theirs.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(theirs, 65534, 65534)
    else:  # only root can give a directory away: be someone else instead
        monkeypatch.setattr(os, "getuid", lambda: os.geteuid() + 1)
    with pytest.warns(ckpt.CkptWarning, match=f"not using {theirs}: it belongs to another user"):
        assert find_store_path() == os.path.join(os.environ["XDG_STATE_HOME"], "pyckpt")


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a/../../b", "x\0y", ".."])
def test_names_cannot_address_outside_the_store(failed, bad):
    for command in (["info", bad], ["run", bad, "--mode", "run"], ["rm", bad]):
        try:
            result = cdip(*command)
        except ValueError:  # the OS itself refuses a NUL in an argument
            with pytest.raises(ckpt.CkptError, match="not a checkpoint name"):
                ckpt.load(bad)
            continue
        assert result.returncode == 2, command
        assert "is not a checkpoint name or id" in result.stderr
        assert "Traceback" not in result.stderr
    assert len(ckpt.checkpoints()) == 2
