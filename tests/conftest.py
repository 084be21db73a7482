"""Shared fixtures: every test gets its own store, home and key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

import ckpt.decorator

# Examples write and read real files: on a busy CI machine one can take longer than
# hypothesis's 200 ms deadline without anything being wrong.
settings.register_profile("ckpt", deadline=None)
settings.load_profile("ckpt")

SAMPLES = Path(__file__).parent / "samples"
BIN = Path(sys.executable).parent
# The three names of the one program; each CLI test runs under all of them.
PROGRAMS = {
    "ckpt": [str(BIN / "ckpt")],
    "cdip": [str(BIN / "cdip")],
    "python -m ckpt": [sys.executable, "-m", "ckpt"],
}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private store, HOME and XDG directories; stable terminal settings."""
    home = tmp_path / "home"
    home.mkdir()
    store = tmp_path / "store"
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()))
    monkeypatch.setenv("PYCKPT_DIR", str(store))
    for name in ("PYCKPT_DISABLE", "PYCKPT_KEEP", "PYCKPT_KEY_FILE", "PYCKPT_KEY", "PYCKPT_FSYNC",
                 "PYCKPT_MAX_BYTES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_BASIC_REPL", "1")
    # pdbpp (a test dependency) otherwise takes the name `pdb` in every interpreter of
    # the environment: `--debugger pdb` must mean the standard library's here
    monkeypatch.setenv("PDBPP_HIJACK_PDB", "0")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ckpt.decorator, "_enabled", True)
    return store


@pytest.fixture
def store(isolated: Path) -> Path:
    """The test's store directory (PYCKPT_DIR)."""
    return isolated


@pytest.fixture(params=list(PROGRAMS), ids=list(PROGRAMS))
def cli(request: pytest.FixtureRequest):
    """Run the CLI under each of its names; returns a CompletedProcess."""
    prefix = PROGRAMS[request.param]

    def run(*args: str, input: str | None = None, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=60, input=input,
            cwd=cwd, env={**os.environ, **(env or {})},
        )

    return run


def run_python(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
               check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the test interpreter in a subprocess."""
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def gone(pid: int) -> bool:
    """Whether process `pid` has ended: no such process, or only its exit status left.

    Asked in one call: between "does it exist?" and "what is its status?" it may end.
    """
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
