"""Supervising a replay: no process outlives `cdip`, and closed standard streams are no error."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import BIN, SAMPLES, gone

import ckpt
from ckpt.supervise import RUNNER

CDIP = str(BIN / "cdip")
LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the parent-death signal is Linux's")


def _wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def _kill_if_alive(pids: list[int]) -> None:
    """A failing test must not leave its processes behind either."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _sample(tmp_path: Path, name: str, *args: str, input: str | None = None) -> None:
    """Copy a sample program and run it once, which files its checkpoint."""
    shutil.copy(SAMPLES / name, tmp_path)
    subprocess.run([sys.executable, name, *args], cwd=tmp_path, input=input, text=True,
                   capture_output=True, timeout=60, check=False)


def _closed(redirection: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`cdip ARGS` with a standard stream closed by the shell (`<&-`, `>&-`)."""
    return subprocess.run(["sh", "-c", f'exec "$0" "$@" {redirection}', CDIP, *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


# -- nothing outlives cdip -------------------------------------------------------------


@LINUX_ONLY
def test_the_replay_dies_with_cdip_killed_by_sigkill(tmp_path):
    _sample(tmp_path, "slow.py", "0.01")
    process = subprocess.Popen(
        [CDIP, "run", "wait", "--mode", "shell", "-c", "seconds = 60", "-c", "call()"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True,
        cwd=tmp_path)
    assert process.stdout is not None
    for line in process.stdout:  # until the replayed function runs
        if "waiting" in line:
            break
    (child,) = psutil.Process(process.pid).children()
    try:
        process.kill()  # no chance to clean up: the kernel must take the child too
        process.wait(timeout=10)
        _wait_for(lambda: gone(child.pid), timeout=3)
    finally:
        _kill_if_alive([child.pid])


def test_a_replay_child_whose_supervisor_is_gone_does_not_start(tmp_path, store):
    _sample(tmp_path, "pipeline.py", "2.0")
    entry = ckpt.checkpoints()[-1]
    options = json.dumps({"store": str(store), "id": entry.id, "mode": "run"})
    # as when cdip died before the child could ask for the signal: its parent is another
    not_ours = "1" if os.getpid() != 1 else "2"
    result = subprocess.run([sys.executable, *RUNNER, options], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path,
                            env={**os.environ, "_CKPT_PARENT": not_ours})
    assert result.returncode == 128 + signal.SIGKILL
    assert result.stdout == "" and result.stderr == ""


def test_the_supervisors_pid_is_not_shown_to_the_replayed_code(tmp_path):
    _sample(tmp_path, "pipeline.py", "2.0")
    result = subprocess.run(
        [CDIP, "run", "summarise", "--mode", "shell",
         "-c", "import os; print('seen:', os.environ.get('_CKPT_PARENT'))"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "seen: None" in result.stdout


def test_a_descendant_that_forks_on_sigterm_is_still_killed(tmp_path):
    _sample(tmp_path, "forking.py")
    log = tmp_path / "helpers.log"
    started = time.monotonic()
    try:
        result = subprocess.run(
            [CDIP, "run", "start", "--mode", "shell", "-c", f"log = {str(log)!r}", "-c", "call()"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path, stdin=subprocess.DEVNULL)
        elapsed = time.monotonic() - started
        assert "helper started" in result.stdout, result.stderr
        pids = [int(line) for line in log.read_text().split()]
        assert len(pids) >= 2, "the helper should have forked when told to stop"
        alive = [pid for pid in pids if not gone(pid)]
        assert alive == [], f"{len(alive)} of {len(pids)} helpers outlived cdip"
        assert elapsed < 10
    finally:
        if log.exists():
            _kill_if_alive([int(line) for line in log.read_text().split()])


# -- closed standard streams --------------------------------------------------------------


def test_run_mode_without_standard_input_reads_end_of_file(tmp_path):
    _sample(tmp_path, "asks.py", input="42\n")
    result = _closed("<&-", "run", "ask", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    # as under </dev/null; not our pipe's closed descriptor
    assert "ask raised EOFError" in result.stdout
    assert "Bad file descriptor" not in result.stdout + result.stderr


def test_run_mode_without_standard_output_is_no_error_of_ours(tmp_path):
    _sample(tmp_path, "pipeline.py", "2.0")
    result = _closed(">&-", "run", "summarise", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 1  # the function's own error, as with output
    assert "ZeroDivisionError" in result.stderr
    assert "OSError" not in result.stderr and "Bad file descriptor" not in result.stderr


@pytest.mark.parametrize("mode", ["shell", "break", "until-error", "locals"])
def test_interactive_modes_without_standard_input_need_a_terminal(tmp_path, mode):
    _sample(tmp_path, "pipeline.py", "2.0")
    result = _closed("<&-", "run", "summarise", "--mode", mode, cwd=tmp_path)
    assert result.returncode == 2
    assert f"--mode {mode} needs a terminal" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("redirection", ["<&-", ">&-", "2>&-", "<&- >&- 2>&-"])
def test_info_with_a_closed_standard_stream(tmp_path, redirection):
    _sample(tmp_path, "pipeline.py", "2.0")
    result = _closed(redirection, "info", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if ">&-" not in redirection:
        assert "summarise" in result.stdout
