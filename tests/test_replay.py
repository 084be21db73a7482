"""`cdip run`: every mode through a real pseudo-terminal, and the supervision around it."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import psutil
import pytest
from conftest import BIN, SAMPLES, gone, run_python

import ckpt

CDIP = str(BIN / "cdip")


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    """A copy of the pipeline that has failed once, leaving checkpoints."""
    script = tmp_path / "pipeline.py"
    shutil.copy(SAMPLES / "pipeline.py", script)
    result = run_python(str(script), "2.0")
    assert result.returncode == 1
    return script


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the user project with its own runner.py, failed once."""
    folder = tmp_path / "project"
    shutil.copytree(SAMPLES / "project", folder)
    result = run_python("app.py", "9", cwd=folder)
    assert result.returncode == 1, result.stderr
    (folder / "main-block-ran").unlink()
    return folder


def spawn(tmp_path: Path, *args: str, log: str = "session.log") -> pexpect.spawn:
    """`cdip ARGS` on a real pseudo-terminal, the screen logged to a file."""
    logfile = (tmp_path / log).open("a")
    child = pexpect.spawn(CDIP, list(args), encoding="utf-8", timeout=30, logfile=logfile,
                          cwd=str(tmp_path), dimensions=(40, 200))
    return child


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus if child.exitstatus is not None else 128 + child.signalstatus


def cdip(*args: str, cwd: Path | None = None, timeout: float = 60,
         **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CDIP, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, stdin=subprocess.DEVNULL, **kwargs)


# -- the modes, on a real terminal --------------------------------------------------


def test_until_error_is_the_default_for_an_error_and_opens_post_mortem(pipeline, tmp_path):
    child = spawn(tmp_path, "run", "summarise")
    child.expect("replaying summarise")
    child.expect("ZeroDivisionError: division by zero")
    child.expect(r"\(Pdb\) ")
    child.sendline("p kept, threshold")
    child.expect(r"\(\[\], 2\.0\)")
    child.expect(r"\(Pdb\) ")
    child.sendline("q")
    assert finish(child) == 1


def test_break_stops_at_the_first_line_with_arguments_bound(pipeline, tmp_path):
    child = spawn(tmp_path, "run", "summarise", "--mode", "break")
    child.expect(r"-> kept = \[v for v in values if v > threshold\]")
    child.expect(r"\(Pdb\) ")
    child.sendline("p threshold")
    child.expect("2.0")
    child.sendline("threshold = 0.05")
    child.expect(r"\(Pdb\) ")
    child.sendline("c")
    assert finish(child) == 0


def test_break_is_the_default_for_a_call_checkpoint(pipeline, tmp_path):
    child = spawn(tmp_path, "run", "load")
    child.expect(r"-> return \[float\(i\) for i in range\(n\)\]")
    child.expect(r"\(Pdb\) ")
    child.sendline("p n")
    child.expect("10")
    child.sendline("c")
    assert finish(child) == 0


def test_shell_binds_the_arguments_and_calls_again(pipeline, tmp_path):
    child = spawn(tmp_path, "run", "summarise", "--mode", "shell")
    child.expect("the arguments of summarise: values, threshold")
    child.expect("call\\(\\) calls summarise again")
    child.expect(">>> ")
    child.sendline("threshold")
    child.expect("2.0")
    child.expect(">>> ")
    child.sendline("threshold = 0.1; call()")
    child.expect(r"0\.1555")
    child.expect(">>> ")
    child.sendline("normalise")  # the module's globals are there too
    child.expect("function normalise")
    child.sendeof()
    assert finish(child) == 0


def test_locals_binds_the_locals_at_the_error(pipeline, tmp_path):
    child = spawn(tmp_path, "run", "summarise", "--mode", "locals")
    child.expect("the locals of summarise at line 22: values, threshold, kept")
    child.expect(">>> ")
    child.sendline("kept")
    child.expect(r"\[\]")
    child.expect(">>> ")
    child.sendline("exit()")
    assert finish(child) == 0


def test_locals_frame_picks_an_inner_frame(tmp_path):
    code = (
        "import ckpt\n"
        "def helper(q):\n"
        "    inner_value = q * 3\n"
        "    raise ValueError(inner_value)\n"
        "@ckpt.ckpt(active=False)\n"
        "def top(p):\n"
        "    return helper(p + 1)\n"
        "if __name__ == '__main__':\n"
        "    top(1)\n"
    )
    (tmp_path / "nested.py").write_text(code)
    run_python("nested.py", cwd=tmp_path)
    child = spawn(tmp_path, "run", "top", "--mode", "locals", "--frame", "-1")
    child.expect("the locals of helper at line 4: q, inner_value")
    child.expect(">>> ")
    child.sendline("inner_value")
    child.expect("6")
    child.sendeof()
    assert finish(child) == 0
    bad = cdip("run", "top", "--mode", "locals", "--frame", "5", "-c", "x", cwd=tmp_path)
    assert bad.returncode == 2
    assert "there are 2 saved frames" in bad.stderr


def test_a_script_that_fails_on_import_shows_its_error(tmp_path):
    (tmp_path / "unguarded.py").write_text(
        "import ckpt\n"
        "@ckpt.ckpt(active=False)\n"
        "def f(x):\n"
        "    raise ValueError(x)\n"
        "f(1)\n")
    run_python("unguarded.py", cwd=tmp_path)
    replayed = cdip("run", "f", "--mode", "run")  # f(1) is skipped: not a definition
    assert replayed.returncode == 1, replayed.stderr
    assert "f raised ValueError: 1" in replayed.stdout
    result = cdip("run", "f", "--mode", "run", "--run-script-top-level")
    assert result.returncode == 2
    assert 'File "' + str(tmp_path / "unguarded.py") + '", line 5' in result.stderr
    assert "importing " + str(tmp_path / "unguarded.py") + " raised ValueError" in result.stderr
    assert "__main__" in result.stderr


def test_ctrl_c_reaches_the_debugger_and_cdip_survives(tmp_path):
    shutil.copy(SAMPLES / "slow.py", tmp_path)
    run_python("slow.py", "0.01", cwd=tmp_path)
    child = spawn(tmp_path, "run", "wait", "--mode", "shell")
    child.expect(">>> ")
    child.sendline("seconds = 60; call()")
    child.expect("waiting")
    time.sleep(0.5)
    child.sendintr()  # Ctrl-C: interrupts the call inside the console
    child.expect("KeyboardInterrupt")
    child.expect(">>> ")
    child.sendline("seconds")
    child.expect("60")
    child.sendeof()
    assert finish(child) == 0


# -- scripted replay, no terminal ---------------------------------------------------


@pytest.mark.parametrize("prefix", [[CDIP], [str(BIN / "ckpt")], [sys.executable, "-m", "ckpt"]],
                         ids=["cdip", "ckpt", "python -m ckpt"])
def test_run_mode_exits_1_while_it_fails_and_0_once_fixed(pipeline, tmp_path, prefix):
    failing = subprocess.run([*prefix, "run", "summarise", "--mode", "run"], capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert failing.returncode == 1, failing.stderr
    assert "ZeroDivisionError: division by zero" in failing.stderr
    assert "_ckpt_runner" not in failing.stderr  # our frames are not shown
    assert "summarise raised ZeroDivisionError" in failing.stdout
    pipeline.write_text(pipeline.read_text().replace(
        "mean = sum(kept) / len(kept)", "mean = sum(kept) / len(kept) if kept else 0.0"))
    fixed = subprocess.run([*prefix, "run", "summarise", "--mode", "run"], capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert fixed.returncode == 0, fixed.stderr
    assert "summarise returned 0.0" in fixed.stdout
    assert "source of summarise changed since capture" in fixed.stderr


def test_run_json_outcome(pipeline):
    import json

    result = cdip("run", "summarise", "--mode", "run", "--json")
    assert result.returncode == 1
    outcome = json.loads(result.stdout)
    assert outcome["outcome"] == "raised"
    assert outcome["exception"] == "ZeroDivisionError"
    assert outcome["name"] == "summarise"


def test_commands_without_a_terminal_give_a_post_mortem_transcript(pipeline):
    result = cdip("run", "summarise", "--mode", "until-error", "-c", "p kept", "-c", "bt",
                  "-c", "q")
    assert result.returncode == 1
    assert "[]" in result.stdout
    assert "-> mean = sum(kept) / len(kept)" in result.stdout


def test_shell_commands_without_a_terminal(pipeline):
    result = cdip("run", "summarise", "--mode", "shell", "-c", "print(len(values), threshold)")
    assert result.returncode == 0, result.stderr
    assert "10 2.0" in result.stdout


@pytest.mark.parametrize("mode", ["break", "until-error", "shell", "locals"])
def test_interactive_modes_without_a_terminal_fail_at_once(pipeline, mode):
    started = time.monotonic()
    result = cdip("run", "summarise", "--mode", mode, timeout=20)
    assert result.returncode == 2
    assert "needs a terminal" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 10


def test_main_block_does_not_run_and_a_users_runner_module_works(project):
    result = cdip("run", "compute", "--mode", "run", cwd=project)
    assert result.returncode == 1, result.stderr
    assert "ValueError: too big: 18" in result.stderr
    assert not (project / "main-block-ran").exists()
    method = cdip("run", "Report.render", "--mode", "run")
    assert method.returncode == 0, method.stderr
    assert "'       totals       '" in method.stdout


def test_a_function_renamed_since_is_a_clear_error(pipeline):
    pipeline.write_text(pipeline.read_text().replace("def summarise(", "def summarize("))
    result = cdip("run", "summarise", "--mode", "run")
    assert result.returncode == 2
    assert "summarise no longer exists" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_deleted_script_is_a_clear_error(pipeline):
    pipeline.unlink()
    result = cdip("run", "summarise", "--mode", "run")
    assert result.returncode == 2
    assert "no longer exists" in result.stderr


def test_closures_replay_from_the_saved_copy_with_a_note(tmp_path):
    (tmp_path / "closure.py").write_text(
        "import ckpt\n"
        "def make(k):\n"
        "    @ckpt.ckpt(active=False)\n"
        "    def scaled(x):\n"
        "        raise ValueError(x * k)\n"
        "    return scaled\n"
        "if __name__ == '__main__':\n"
        "    make(3)(5)\n")
    run_python("closure.py", cwd=tmp_path)
    result = cdip("run", "make.<locals>.scaled", "--mode", "run")
    assert result.returncode == 1
    assert "ValueError: 15" in result.stderr
    assert "edits to it are not picked up" in result.stderr


def test_async_function_replays(tmp_path):
    (tmp_path / "coro.py").write_text(
        "import asyncio, ckpt\n"
        "@ckpt.ckpt(active=False)\n"
        "async def fetch(n):\n"
        "    await asyncio.sleep(0)\n"
        "    raise ConnectionError(n)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(fetch(4))\n")
    run_python("coro.py", cwd=tmp_path)
    result = cdip("run", "fetch", "--mode", "run")
    assert result.returncode == 1
    assert "ConnectionError: 4" in result.stderr
    child = spawn(tmp_path, "run", "fetch", "--mode", "break")
    child.expect(r"-> await asyncio.sleep\(0\)")
    child.expect(r"\(Pdb\) ")
    child.sendline("p n")
    child.expect("4")
    child.sendline("q")
    assert finish(child) == 0


def test_a_recorded_interpreter_that_is_gone_falls_back_to_ours(pipeline, store):
    result = cdip("run", "summarise", "--mode", "run", "--python", "/nonexistent/python")
    assert result.returncode == 2
    assert "not an executable" in result.stderr


def test_a_checkpoint_from_another_environment_replays_in_that_environment(tmp_path):
    # A venv's python links to the same base interpreter as ours: it must not be
    # taken for ours (its packages, and its sys.prefix, differ).
    other = tmp_path / "other-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(other)], check=True,
                   timeout=120)
    ours = [p for p in sys.path if p.endswith("site-packages") or "__editable__" in p]
    # ckpt installed there, as pip would (a .pth): the replay child boots isolated
    # (-I), so PYTHONPATH could not make it importable
    (site,) = (other / "lib").glob("python*/site-packages")
    (site / "ckpt-test.pth").write_text("\n".join(ours) + "\n")
    env = dict(os.environ)
    # the prefix goes to a file: a long path would be shortened in the printed outcome
    (tmp_path / "where.py").write_text(
        "import sys, ckpt\n\n@ckpt.ckpt\ndef where():\n"
        "    open('prefix.txt', 'w').write(sys.prefix)\n")
    subprocess.run([str(other / "bin" / "python"), "-c", "import where; where.where()"],
                   cwd=tmp_path, env=env, check=True, timeout=60)
    (tmp_path / "prefix.txt").unlink()
    result = cdip("run", "where", "--mode", "run", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "prefix.txt").read_text() == str(other)
    assert (f"with {other / 'bin' / 'python'} (recorded at capture), not the one cdip runs "
            f"under ({sys.executable})") in result.stderr


def test_the_interpreter_is_ours_only_in_our_environment(tmp_path):
    from ckpt.supervise import is_this_interpreter

    assert is_this_interpreter(sys.executable)
    sibling = Path(sys.executable).with_name("python3")
    assert sibling.exists()
    assert is_this_interpreter(str(sibling))  # another name, same environment
    elsewhere = tmp_path / "python"
    elsewhere.symlink_to(os.path.realpath(sys.executable))
    assert not is_this_interpreter(str(elsewhere))  # the same file, another directory
    assert not is_this_interpreter(str(tmp_path / "missing" / "python"))


def test_the_replay_child_starts_without_heavy_imports(pipeline, store):
    import json

    from ckpt.supervise import RUNNER

    (entry,) = [e for e in ckpt.checkpoints() if e.name == "load"]  # a step that succeeds
    options = json.dumps({"store": str(store), "id": entry.id, "mode": "run"})
    result = subprocess.run([sys.executable, "-X", "importtime", *RUNNER, options],
                            capture_output=True, text=True, timeout=60, cwd=pipeline.parent,
                            env={**os.environ, "PYCKPT_DISABLE": "1"})
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "_ckpt_runner.replay" in imported
    # argparse/runpy: the runner's own start; cloudpickle: only for a function that must
    # be replayed from its saved copy; ast: only for a script (its top level is sorted
    # into definitions and the rest) or a changed source file, never for a module
    # function (test_script_replay)
    for heavy in ("argparse", "runpy", "pathlib", "typing", "subprocess", "cloudpickle"):
        assert heavy not in imported, f"the replay child imports {heavy}"


def test_replay_files_no_new_checkpoints(pipeline):
    before = [entry.id for entry in ckpt.checkpoints()]
    cdip("run", "summarise", "--mode", "run")
    assert [entry.id for entry in ckpt.checkpoints()] == before


# -- supervision ---------------------------------------------------------------------


def _slow_checkpoint(tmp_path: Path, spawn_helper: bool) -> None:
    shutil.copy(SAMPLES / "slow.py", tmp_path)
    args = ["slow.py", "0.01"] + (["spawn"] if spawn_helper else [])
    result = run_python(*args, cwd=tmp_path)
    assert result.returncode == 1
    for line in result.stdout.splitlines():
        if line.startswith("helper "):
            os.kill(int(line.split()[1]), signal.SIGKILL)


def _replay_slow(tmp_path: Path) -> subprocess.Popen[str]:
    """Replay `wait` with 60 s instead of 0.01 s, edited through the shell mode."""
    return subprocess.Popen(
        [CDIP, "run", "wait", "--mode", "shell", "-c", "seconds = 60", "-c", "call()"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        cwd=tmp_path)


def _wait_for(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_sigterm_is_forwarded_and_nothing_is_left_behind(tmp_path):
    _slow_checkpoint(tmp_path, spawn_helper=True)
    process = _replay_slow(tmp_path)
    _wait_for(lambda: any("sleep" in p.name() for p in _descendants(process.pid)))
    family = _descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    for member in family:
        assert not member.is_running() or member.status() == psutil.STATUS_ZOMBIE


def test_a_child_killed_by_a_signal_gives_128_plus_n(tmp_path):
    _slow_checkpoint(tmp_path, spawn_helper=False)
    process = _replay_slow(tmp_path)
    assert process.stdout is not None
    for line in process.stdout:  # until the replayed function runs
        if "waiting" in line:
            break
    (child,) = _descendants(process.pid)
    child.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGKILL


def test_a_child_killed_before_it_is_told_what_to_replay_gives_128_plus_n(tmp_path):
    # cdip starts the child ahead of time; killed while it waits, it is reported all the same
    _slow_checkpoint(tmp_path, spawn_helper=False)
    process = _replay_slow(tmp_path)
    _wait_for(lambda: bool(_descendants(process.pid)))
    _descendants(process.pid)[0].send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGKILL


def _standby_children(cwd: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "cwd", "status"]):
        if "--standby" in (process.info["cmdline"] or []) and process.info["cwd"] == str(cwd) \
                and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


@pytest.mark.parametrize("args", [["run", "no-such-name"], ["run", "--mode", "nonsense"],
                                  ["run", "wait", "--mode", "shell"]],
                         ids=["unknown name", "usage error", "no terminal"])
def test_a_replay_that_never_starts_leaves_no_child_waiting(tmp_path, args):
    _slow_checkpoint(tmp_path, spawn_helper=False)
    result = subprocess.run([CDIP, *args], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert not _standby_children(tmp_path)


def test_the_runner_started_by_hand_says_what_it_is():
    result = subprocess.run([sys.executable, "-m", "_ckpt_runner", "--store", "x"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "replay child of `cdip run`" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_process_the_function_started_does_not_outlive_the_replay(tmp_path):
    _slow_checkpoint(tmp_path, spawn_helper=True)
    before = sleeping()
    result = cdip("run", "wait", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 1
    helpers = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("helper")]
    assert len(helpers) == 1
    assert gone(int(helpers[0]))
    assert sleeping() <= before


def sleeping() -> set[int]:
    """The `sleep` processes now (one that ends while listed is not)."""
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "sleep"}


def test_until_error_reports_that_it_now_succeeds(pipeline, tmp_path):
    pipeline.write_text(pipeline.read_text().replace(
        "mean = sum(kept) / len(kept)", "mean = sum(kept) / len(kept) if kept else -1.0"))
    child = spawn(tmp_path, "run", "summarise", "--mode", "until-error")
    child.expect("source of summarise changed since capture")
    child.expect("summarise now succeeds: it returned -1.0")
    assert finish(child) == 0


def test_a_tampered_checkpoint_is_refused_before_unpickling(pipeline, tmp_path):
    entry = ckpt.checkpoints()[-1]
    data = bytearray(Path(entry.call_path).read_bytes())
    # the pickled threshold, 2.0: one flipped bit would load as 2.0000000000000004
    position = data.index(b"G" + struct.pack(">d", 2.0)) + 8
    data[position] ^= 1
    Path(entry.call_path).write_bytes(bytes(data))
    result = cdip("run", "summarise", "--mode", "run")
    assert result.returncode == 2
    assert "does not verify" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_escalates_to_sigkill_when_ignored(tmp_path):
    (tmp_path / "stubborn.py").write_text(
        "import signal, time, ckpt\n"
        "@ckpt.ckpt\n"
        "def stubborn(seconds):\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    print('ignoring', flush=True)\n"
        "    time.sleep(seconds)\n"
        "if __name__ == '__main__':\n"
        "    stubborn(0)\n")
    run_python("stubborn.py", cwd=tmp_path, check=True)
    process = subprocess.Popen(
        [CDIP, "run", "stubborn", "--mode", "shell", "-c", "seconds = 60", "-c", "call()"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip().endswith("ignoring"):
            break
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGKILL
    assert 4 < time.monotonic() - started < 20


def test_notices_name_python_and_package_drift():
    from _ckpt_runner.replay import notices

    from ckpt.checkpoint import Checkpoint

    checkpoint = Checkpoint(
        id="x", name="f", trigger="call", created=0.0, arguments={}, kinds={}, frames=[],
        exception=None, metadata={"python": "3.0.1", "packages": {"pytest": "0.0.1",
                                                                   "no-such-dist": "1.0"}},
        location={"module": "m", "qualname": "f", "file": None, "source_hash": None})
    lines = notices(checkpoint, None)
    assert any(line.startswith("Python ") and "3.0.1 at capture" in line for line in lines)
    assert any(line.startswith("pytest ") and "0.0.1 at capture" in line for line in lines)
    assert "no-such-dist not installed now, 1.0 at capture" in lines


def test_a_file_unchanged_since_capture_is_not_parsed_again(tmp_path):
    from ckpt.source import current_source_hash, file_hash, source_hash

    module = tmp_path / "m.py"
    module.write_text("def f():\n    return 1\n")
    location = {"file": str(module), "qualname": "f", "file_hash": file_hash(str(module)),
                "source_hash": "as recorded"}
    assert current_source_hash(location) == "as recorded"  # same bytes: taken as recorded
    module.write_text("# a comment\ndef f():\n    return 1\n")  # other bytes: parsed
    same_function = current_source_hash(location)
    assert same_function == source_hash(str(module), "f") != "as recorded"
    module.write_text("def f():\n    return 2\n")
    assert current_source_hash(location) not in (same_function, None)
    assert current_source_hash({**location, "file_hash": None}) == source_hash(str(module), "f")


def test_no_name_replays_the_newest(pipeline):
    result = cdip("run", "--mode", "run")
    assert result.returncode == 1
    assert "replaying summarise" in result.stderr


def test_ipython_shell_runs_commands(pipeline):
    # (without IPython it is refused before any user code: see test_faithful)
    pytest.importorskip("IPython")
    result = cdip("run", "summarise", "--mode", "shell", "--shell", "ipython",
                  "-c", "print(threshold * 2)")
    assert result.returncode == 0, result.stderr
    assert "4.0" in result.stdout


def test_a_working_directory_that_is_gone_is_mentioned(tmp_path):
    workdir = tmp_path / "gone"
    workdir.mkdir()
    (tmp_path / "job.py").write_text(
        "import ckpt\n"
        "@ckpt.ckpt\n"
        "def job(x):\n"
        "    return x + 1\n"
        "if __name__ == '__main__':\n"
        "    job(1)\n")
    run_python(str(tmp_path / "job.py"), cwd=workdir, check=True)
    workdir.rmdir()
    result = cdip("run", "job", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"the recorded working directory {workdir} does not exist here" in result.stderr
    assert "job returned 2" in result.stdout


def test_a_module_run_with_dash_m_replays_by_its_name(tmp_path):
    project = tmp_path / "pkgdemo"
    shutil.copytree(SAMPLES / "pkgdemo", project)
    captured = run_python("-m", "analysis.run", "2", cwd=project)
    assert captured.returncode == 1 and "IndexError" in captured.stderr
    result = cdip("run", "report", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "IndexError: list index out of range" in result.stderr
    assert "analysis/run.py" in result.stderr
    helpers = project / "analysis" / "run.py"
    helpers.write_text(helpers.read_text().replace("scaled[10]", "scaled[-1]"))
    fixed = cdip("run", "report", "--mode", "run", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "report returned 6" in fixed.stdout
