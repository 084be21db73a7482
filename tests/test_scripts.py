"""Capture from real programs: a script run as __main__, stdin, a REPL, `python -m`."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest
from conftest import SAMPLES, run_python

import ckpt


def test_script_run_as_main_is_captured_with_its_metadata(store, tmp_path):
    result = run_python(str(SAMPLES / "pipeline.py"), "2.0")
    assert result.returncode == 1
    assert "ZeroDivisionError" in result.stderr
    assert "CkptWarning" not in result.stderr
    entries = ckpt.checkpoints()
    assert [(e.name, e.trigger) for e in entries] == [("load", "call"), ("summarise", "error")]
    failing = ckpt.load("summarise")
    assert failing.arguments["threshold"] == 2.0
    assert failing.locals["kept"] == []
    assert failing.location["module"] == "__main__"
    assert failing.location["file"] == str(SAMPLES / "pipeline.py")
    assert failing.location["source_hash"]
    metadata = failing.metadata
    assert metadata["argv"] == [str(SAMPLES / "pipeline.py"), "2.0"]
    assert metadata["cwd"] == str(tmp_path)
    assert metadata["executable"] == sys.executable
    assert metadata["python"] == ".".join(map(str, sys.version_info[:3]))
    for key in ("host", "pid", "user", "platform", "path", "packages", "git_commit"):
        assert key in metadata
    assert "ckpt" in metadata["packages"]


def test_module_run_with_dash_m_records_its_real_name(store):
    result = run_python("-m", "pipeline", "2.0", cwd=SAMPLES)
    assert result.returncode == 1
    assert ckpt.load("summarise").location["module"] == "pipeline"


def test_function_from_stdin_is_kept_by_value(store):
    code = (
        "import ckpt\n"
        "@ckpt.ckpt(active=False)\n"
        "def typed(x):\n"
        "    raise ValueError(x * 2)\n"
        "typed(21)\n"
    )
    result = run_python("-c", code)
    assert result.returncode == 1
    checkpoint = ckpt.load("typed")
    assert checkpoint.location["source_hash"] is None
    assert checkpoint.saved_function is not None
    with pytest.raises(ValueError) as caught:
        checkpoint.call()
    assert caught.value.args == (42,)


def test_function_typed_into_a_real_repl(store, tmp_path):
    log = (tmp_path / "repl.log").open("w")
    child = pexpect.spawn(sys.executable, ["-q", "-i"], encoding="utf-8", timeout=30,
                          logfile=log, cwd=str(tmp_path))
    child.expect(">>> ")
    child.sendline("import ckpt")
    child.expect(">>> ")
    child.sendline("@ckpt.ckpt")
    child.sendline("def square(v): return v * v")
    child.sendline("")
    child.expect(">>> ")
    child.sendline("square(7)")
    child.expect("49")
    child.expect(">>> ")
    child.sendline("exit()")
    child.expect(pexpect.EOF)
    checkpoint = ckpt.load("square")
    assert checkpoint.args == (7,)
    assert checkpoint.call() == 49


def test_git_commit_is_recorded(store, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "job.py").write_text(
        "import ckpt\n\n@ckpt.ckpt\ndef job(x):\n    return x\n\njob(1)\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(project)]
    import subprocess

    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (project / "other.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "other.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "two"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    (project / "other.py").write_text("x = 2\n")  # another tracked file, changed
    run_python(str(project / "job.py"), check=True)
    assert ckpt.load("job").metadata["git_commit"] == head
    # only the function's own file is asked about (fast even in a huge repository)
    assert ckpt.load("job").metadata["git_dirty"] is False
    assert Path(ckpt.load("job").location["file"]).parent == project
