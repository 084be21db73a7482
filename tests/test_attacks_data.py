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
