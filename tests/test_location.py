"""A store must be ours alone: the one chosen is refused, a `.pyckpt` upward skipped, if not."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest
from conftest import SAMPLES, run_python

import ckpt
from ckpt.location import find_store_path

SAVE_ONE = "import ckpt\nckpt.ckpt(lambda x: x)(1)\n"
NOBODY = 65534

UNSAFE = {  # id: (mode, owner, what the refusal says)
    "another user's": (0o700, NOBODY, "it belongs to another user (uid 65534)"),
    "world-writable": (0o777, None, "it is writable by group or others (mode 777)"),
    "world-writable with the sticky bit": (0o1777, None,
                                           "it is writable by group or others (mode 1777)"),
    "group-writable": (0o770, None, "it is writable by group or others (mode 770)"),
}


def give_away(path: Path) -> None:
    """Make `path` (a link itself, not its target) another user's: uid 65534, nobody."""
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    os.lchown(path, NOBODY, NOBODY)


def make_store(path: Path, mode: int, owner: int | None) -> Path:
    path.mkdir(parents=True)
    path.chmod(mode)
    if owner is not None:
        give_away(path)
    return path


def state_store() -> Path:
    return Path(os.environ["XDG_STATE_HOME"]) / "pyckpt"


def saved(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith((".call", ".error"))]


# -- the store chosen (PYCKPT_DIR, --dir, the user's default) is refused ----------------


@pytest.mark.parametrize("case", list(UNSAFE), ids=list(UNSAFE))
def test_an_unsafe_pyckpt_dir_is_refused(store, cli, case):
    mode, owner, why = UNSAFE[case]
    make_store(store, mode, owner)
    result = run_python("-c", SAVE_ONE)
    assert result.returncode == 0, result.stderr  # the decorator warns, the program goes on
    assert "CkptWarning" in result.stderr
    assert f"not using the store {store}: {why}" in result.stderr
    assert saved(store) == []
    listed = cli("info")
    assert listed.returncode == 2
    assert f"error: not using the store {store}: {why}" in listed.stderr
    fix = "chown" if owner is not None else f"chmod 700 {store}"
    assert "hint: a store must be yours alone" in listed.stderr and fix in listed.stderr
    assert "Traceback" not in listed.stderr


def test_an_unsafe_store_fails_every_command_before_it_acts(store, tmp_path):
    shutil.copy(SAMPLES / "pipeline.py", tmp_path)
    run_python("pipeline.py", "2.0", cwd=tmp_path)
    entry = ckpt.checkpoints()[-1]
    store.chmod(0o777)
    with pytest.raises(ckpt.CkptError, match="writable by group or others"):
        ckpt.load()
    for command in (["run", "--mode", "run"], ["rm", entry.id], ["clear", "--yes"], ["gc"],
                    ["export", "-o", str(tmp_path / "out.bundle")]):
        result = run_python("-m", "ckpt", *command, cwd=tmp_path)
        assert result.returncode == 2, command
        assert "not using the store" in result.stderr, command
    assert len(saved(store)) == 3  # nothing removed: two calls, one error


def test_the_default_store_of_another_user_is_refused(cli, monkeypatch):
    monkeypatch.delenv("PYCKPT_DIR")
    theirs = make_store(state_store(), 0o700, NOBODY)
    result = run_python("-c", SAVE_ONE)
    assert result.returncode == 0
    assert f"not using the store {theirs}: it belongs to another user" in result.stderr
    assert saved(theirs) == []
    listed = cli("info")
    assert listed.returncode == 2 and "belongs to another user" in listed.stderr


def test_an_unsafe_store_given_with_dir_is_refused(tmp_path, cli):
    theirs = make_store(tmp_path / "theirs", 0o700, NOBODY)
    result = cli("info", "--dir", "theirs")
    assert result.returncode == 2
    assert f"not using the store {theirs}: it belongs to another user" in result.stderr


def test_a_store_that_does_not_exist_yet_is_created_private(tmp_path, monkeypatch):
    new = tmp_path / "not" / "yet"
    monkeypatch.setenv("PYCKPT_DIR", str(new))
    assert find_store_path() == str(new)
    ckpt.ckpt(lambda x: x)(1)
    assert stat.S_IMODE(new.stat().st_mode) == 0o700
    assert len(saved(new)) == 1


def test_the_decorator_warns_and_does_not_save_in_process(store):
    store.mkdir(mode=0o700)
    store.chmod(0o777)
    with pytest.warns(ckpt.CkptWarning, match="writable by group or others") as caught:
        assert ckpt.ckpt(lambda x: x * 2)(21) == 42
    assert saved(store) == []
    assert f"chmod 700 {store}" in str(caught[0].message)  # what to do, not only why


def test_a_symlinked_store_owned_by_another_user_is_refused(tmp_path, monkeypatch, cli):
    mine = make_store(tmp_path / "mine", 0o700, None)
    link = tmp_path / "link"
    link.symlink_to(mine)
    give_away(link)
    monkeypatch.setenv("PYCKPT_DIR", str(link))
    with pytest.raises(ckpt.CkptError, match="symbolic link owned by another user"):
        find_store_path()
    listed = cli("info")
    assert listed.returncode == 2
    assert f"not using the store {link}: it is a symbolic link owned by another user" \
        in listed.stderr


def test_a_store_that_is_a_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("PYCKPT_DIR", str(tmp_path / "file"))
    with pytest.raises(ckpt.CkptError, match="it is not a directory"):
        find_store_path()


def test_the_check_costs_one_stat_per_save(tmp_path, monkeypatch):
    # find_store_path runs at every save: it must stay one system call (two for a link)
    mine = make_store(tmp_path / "mine", 0o700, None)
    (tmp_path / "link").symlink_to(mine)
    calls = []
    for name in ("stat", "lstat"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, _real=real, _name=name, **k:
                            calls.append(_name) or _real(*a, **k))
    for store, expected in ((mine, ["lstat"]), (tmp_path / "link", ["lstat", "stat"])):
        monkeypatch.setenv("PYCKPT_DIR", str(store))
        calls.clear()
        assert find_store_path() == str(store)
        assert calls == expected


# -- a `.pyckpt` found upward is skipped, with a warning --------------------------------


def test_a_pyckpt_symlink_owned_by_another_user_is_not_used(tmp_path, monkeypatch):
    monkeypatch.delenv("PYCKPT_DIR")
    mine = make_store(tmp_path / "mine", 0o700, None)
    link = tmp_path / ".pyckpt"
    link.symlink_to(mine)  # a target we would accept: the link's owner is what is wrong
    give_away(link)
    deep = tmp_path / "work"
    deep.mkdir()
    result = run_python("-c", SAVE_ONE, cwd=deep)
    assert result.returncode == 0
    assert f"not using {link}: it is a symbolic link owned by another user" in result.stderr
    assert saved(mine) == []
    assert len(saved(state_store())) == 1


@pytest.mark.parametrize("target", ["another user's", "world-writable", "a file", "nothing"])
def test_a_pyckpt_symlink_is_judged_by_its_target(tmp_path, monkeypatch, target):
    monkeypatch.delenv("PYCKPT_DIR")
    there = tmp_path / "there"
    if target == "a file":
        there.write_text("")
        why = "it is not a directory"
    elif target == "nothing":
        why = "it is a symbolic link to nothing"
    else:
        mode, owner, why = UNSAFE[target]
        make_store(there, mode, owner)
    link = tmp_path / ".pyckpt"
    link.symlink_to(there)
    with pytest.warns(ckpt.CkptWarning, match=re.escape(f"not using {link}: {why}")):
        assert find_store_path() == str(state_store())


def test_a_pyckpt_symlink_of_ours_to_a_private_directory_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("PYCKPT_DIR")
    mine = make_store(tmp_path / "mine", 0o700, None)
    (tmp_path / ".pyckpt").symlink_to(mine)
    run_python("-c", SAVE_ONE, check=True)
    assert len(saved(mine)) == 1


def test_an_unsafe_pyckpt_is_passed_over_for_a_safe_one_further_up(tmp_path, monkeypatch):
    monkeypatch.delenv("PYCKPT_DIR")
    outer = make_store(tmp_path / ".pyckpt", 0o700, None)
    inner = make_store(tmp_path / "project" / ".pyckpt", 0o777, None)
    monkeypatch.chdir(inner.parent)
    with pytest.warns(ckpt.CkptWarning, match=f"not using {inner}: it is writable"):
        ckpt.ckpt(lambda x: x)(1)
    assert saved(inner) == [] and len(saved(outer)) == 1


def test_init_refuses_another_users_pyckpt(cli, tmp_path):
    theirs = make_store(tmp_path / ".pyckpt", 0o755, NOBODY)
    result = cli("init")
    assert result.returncode == 2
    assert f"not using the store {theirs}: it belongs to another user" in result.stderr
    assert os.listdir(theirs) == []  # nothing written into it


# -- relative paths: the replay child runs in the recorded working directory ------------


@pytest.mark.parametrize("how", ["--dir", "PYCKPT_DIR"])
def test_a_relative_store_replays_from_another_directory(tmp_path, store, how):
    shutil.copy(SAMPLES / "pipeline.py", tmp_path)
    run_python("pipeline.py", "2.0", cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    relative = os.path.relpath(store, elsewhere)
    if how == "--dir":
        args, env = ["--dir", relative], {}
    else:
        args, env = [], {"PYCKPT_DIR": relative}
    result = run_python("-m", "ckpt", "run", "summarise", "--mode", "run", *args,
                        cwd=elsewhere, env=env)
    assert result.returncode == 1, result.stderr
    assert "summarise raised ZeroDivisionError" in result.stdout
