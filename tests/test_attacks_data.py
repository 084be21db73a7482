"""Attacks on the data engine, the loop and the cluster key: each a guarantee, as a test."""

from __future__ import annotations

import os
import shutil
import subprocess

from conftest import BIN, SAMPLES, run_python

CDIP = str(BIN / "cdip")
WAIT = 60  # seconds: a hang is the failure these tests catch; a pass takes ~1 s


def test_a_fifo_as_the_key_file_never_hangs_the_program_or_cdip(tmp_path):
    # PYCKPT_KEY_FILE names a FIFO (no writer: opening it to read would block for ever)
    fifo = tmp_path / "key"
    os.mkfifo(fifo)
    env = {"PYCKPT_KEY_FILE": str(fifo)}
    shutil.copy(SAMPLES / "pipeline.py", tmp_path / "pipeline.py")

    program = run_python("pipeline.py", "0.0", cwd=tmp_path, env=env)
    assert program.returncode == 0, program.stderr  # its result unchanged, nothing saved
    assert "mean: " in program.stdout
    assert "is not a regular file" in program.stderr  # the decorator's warning

    result = subprocess.run([CDIP, "key"], capture_output=True, text=True, timeout=WAIT,
                            env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"cdip: error: the checkpoint key {fifo} is not a regular file\n"


LEAKS = """
import glob, os, sys
import ckpt

@ckpt.ckpt(active=False)
def victim(x):
    raise ValueError(x)

@ckpt.ckpt(active=False)
def step():
    return ckpt.load("victim")  # fails inside ckpt: its frames hold the key

try:
    victim(1)
except ValueError:
    pass
for part in glob.glob(os.path.join(os.environ["PYCKPT_DIR"], "victim-*")):
    os.truncate(part, os.path.getsize(part) // 2)
step()
"""


def test_the_key_never_reaches_a_checkpoint_from_the_locals_of_ckpts_frames(tmp_path, store):
    # A decorated function whose call into ckpt fails (here a damaged checkpoint) saves the
    # locals of every frame below it: ckpt's own frames hold the key, which must not be
    # stored, nor exported or uploaded with the checkpoint, nor shown by `cdip info`.
    script = tmp_path / "leaks.py"
    script.write_text(LEAKS)
    result = run_python(str(script), cwd=tmp_path)
    assert "CorruptCheckpointError" in result.stderr, result.stderr
    key = next((tmp_path / "home").rglob("key")).read_bytes()
    assert len(key) == 32
    files = [path for path in store.rglob("*") if path.is_file()]
    assert any(path.name.startswith("step-") and path.suffix == ".error" for path in files)
    for path in files:
        data = path.read_bytes()
        assert key not in data and key.hex().encode() not in data, f"the key is in {path}"
    shown = subprocess.run([CDIP, "info", "step", "--json"], capture_output=True, text=True,
                           timeout=WAIT)
    assert shown.returncode == 0, shown.stderr
    assert key.hex() not in shown.stdout
    # the frames' locals are there, what holds the key as a placeholder that says why
    assert '"unpicklable": "TypeError: the ckpt key is never stored"' in shown.stdout


def test_a_python_that_cannot_run_is_one_line_not_a_traceback(tmp_path):
    # --python DIR passes an X_OK check; a file marked executable that is no program
    # fails to start (ENOEXEC): each is bad input, exit 2, never our traceback
    shutil.copy(SAMPLES / "pipeline.py", tmp_path / "pipeline.py")
    assert run_python("pipeline.py", "2.0", cwd=tmp_path).returncode == 1
    garbage = tmp_path / "python"
    garbage.write_bytes(b"\x00\x01not a program")
    garbage.chmod(0o700)
    for python in (tmp_path, garbage):
        result = subprocess.run([CDIP, "run", "summarise", "--mode", "run", "--python",
                                 str(python)], capture_output=True, text=True, timeout=WAIT,
                                cwd=tmp_path, stdin=subprocess.DEVNULL)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"cdip: error: the interpreter {python} cannot be run ("
                                        ), result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.splitlines()) <= 2


def test_a_key_file_in_a_missing_folder_is_refused_not_silently_created(tmp_path):
    # a typo in PYCKPT_KEY_FILE would otherwise make a new key that signs what no other
    # process (using the right path) can read
    key = tmp_path / "no-such-folder" / "key"
    env = {"PYCKPT_KEY_FILE": str(key)}
    shutil.copy(SAMPLES / "pipeline.py", tmp_path / "pipeline.py")
    program = run_python("pipeline.py", "0.0", cwd=tmp_path, env=env)
    assert program.returncode == 0, program.stderr  # its result unchanged, nothing saved
    assert "mean: " in program.stdout
    assert "the folder" in program.stderr and "does not exist" in program.stderr
    assert not key.parent.exists()

    result = subprocess.run([CDIP, "key"], capture_output=True, text=True, timeout=WAIT,
                            env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"cdip: error: PYCKPT_KEY_FILE names {key}, but the folder ")
    assert not key.parent.exists()
    key.parent.mkdir()  # the folder made: the key is made in it on first use
    made = subprocess.run([CDIP, "key"], capture_output=True, text=True, timeout=WAIT,
                          env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    assert made.returncode == 0, made.stderr
    assert key.is_file()
