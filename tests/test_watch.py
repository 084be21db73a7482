"""`cdip run --watch`: a round per change, through a real terminal, and nothing left behind."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pexpect
import psutil
import pytest
from conftest import BIN, SAMPLES, run_python

CDIP = str(BIN / "cdip")
TIMEOUT = 60  # generous: the machine running the tests may be busy
FAIL = "round 1: fail: ratio raised ZeroDivisionError: division by zero"
WATCHING = r"cdip: watching .* \(Ctrl-C to stop\)"
FIXED = 'def offset():\n    return 0\n'  # ratio(10, 1) is then 10 / 1


def failed_once(tmp_path: Path, helper_elsewhere: bool) -> tuple[Path, Path]:
    """The ratio step, failed once: (its directory, the helper file it imports).

    The helper lies in the project (the directory the step ran in), or in a
    folder outside it on PYTHONPATH, which only the replay's imports can name.
    """
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(SAMPLES / "loop" / "ratio.py", app)
    helper_dir = tmp_path / "lib" if helper_elsewhere else app
    helper_dir.mkdir(exist_ok=True)
    shutil.copy(SAMPLES / "loop" / "offsets.py", helper_dir)
    result = run_python("ratio.py", cwd=app, env={"PYTHONPATH": str(helper_dir)})
    assert result.returncode == 1, result.stderr
    return app, helper_dir / "offsets.py"


@pytest.fixture
def app(tmp_path: Path) -> tuple[Path, Path]:
    """The ratio step failed once, its helper in the project."""
    return failed_once(tmp_path, helper_elsewhere=False)


@pytest.fixture(params=["in the project", "imported from elsewhere"])
def any_app(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    """The ratio step failed once, its helper in the project or outside it."""
    return failed_once(tmp_path, helper_elsewhere=request.param != "in the project")


def watch(app: Path, *args: str) -> pexpect.spawn:
    """`cdip run ratio --watch ARGS` on a real terminal, the screen logged to a file."""
    logfile = (app.parent / "watch.log").open("a")
    return pexpect.spawn(CDIP, ["run", "ratio", "--watch", *args], cwd=str(app),
                         encoding="utf-8", timeout=TIMEOUT, logfile=logfile,
                         dimensions=(40, 200))


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus if child.exitstatus is not None else 128 + child.signalstatus


def descendants(child: pexpect.spawn) -> list[psutil.Process]:
    return psutil.Process(child.pid).children(recursive=True)


def assert_gone(processes: list[psutil.Process]) -> None:
    alive = [process for process in processes
             if process.is_running() and process.status() != psutil.STATUS_ZOMBIE]
    for process in alive:  # a failing test leaves nothing behind either
        process.kill()
    assert alive == [], f"left behind: {alive}"


def test_an_edit_flips_fail_to_pass_and_until_pass_exits_0(any_app):
    folder, helper = any_app
    child = watch(folder, "--until-pass")
    child.expect(FAIL)
    child.expect(WATCHING)
    # a burst of saves, the first of them broken halfway: one round, of the last
    for text in ("def offset(:\n", "def offset():\n    return 2\n", FIXED):
        helper.write_text(text)
    child.expect("offsets.py changed: replaying again")
    child.expect("round 2: pass: ratio returned 10.0")
    assert finish(child) == 0
    assert "round 3" not in child.before


def test_each_change_is_a_round_until_ctrl_c_which_leaves_nothing(any_app):
    folder, helper = any_app
    broken = helper.read_text()
    child = watch(folder)
    child.expect(FAIL)
    child.expect(WATCHING)
    helper.write_text(FIXED)
    child.expect("round 2: pass: ratio returned 10.0")
    child.expect(WATCHING)
    helper.write_text(broken)
    child.expect("round 3: fail: ratio raised ZeroDivisionError")
    child.expect(WATCHING)
    waiting = descendants(child)
    assert waiting, "the next round's interpreter should be booting ahead"
    child.sendintr()  # Ctrl-C, as the terminal sends it
    assert finish(child) == 130
    assert "Traceback" not in child.before
    assert_gone(waiting)


def test_ctrl_c_during_a_round_ends_the_watch_and_its_processes(app, tmp_path):
    folder, helper = app
    child = watch(folder)
    child.expect(FAIL)
    child.expect(WATCHING)
    # the next round starts a process in a session of its own (Ctrl-C cannot reach
    # it), then takes its time
    helper.write_text(
        "import subprocess, time\n"
        "def offset():\n"
        "    helper = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
        "    print('helper', helper.pid, flush=True)\n"
        "    time.sleep(300)\n")
    child.expect(r"helper (\d+)")
    started = [psutil.Process(int(child.match.group(1))), *descendants(child)]
    child.sendintr()
    assert finish(child) == 130
    assert_gone(started)


def test_a_file_the_replay_does_not_read_starts_no_round(any_app):
    folder, helper = any_app
    child = watch(folder, "--until-pass")
    child.expect(FAIL)
    child.expect(WATCHING)
    (folder / "notes.txt").write_text("not code\n")
    (folder / "__pycache__").mkdir(exist_ok=True)
    (folder / "__pycache__" / "stale.py").write_text("x = 1\n")
    helper.write_text(FIXED)
    # all three in one burst: the change named is the first of them that counts
    child.expect(r"cdip: (\S+) changed: replaying again")
    assert child.match.group(1).endswith("offsets.py")
    child.expect("round 2: pass")
    assert finish(child) == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--until-pass"], "--until-pass goes with --watch"),
    (["--watch", "--mode", "shell"], "--watch replays in --mode run or until-error, not shell"),
    # checked before the first round: otherwise every round fails alike, waiting for ever
    (["--watch", "--frame", "99"], "--frame 99: checkpoint "),
    (["--watch", "--frame", "-99"], "holds 1 saved frame"),
])
def test_what_watch_cannot_do_is_one_line_and_exit_2(tmp_path, args, message):
    shutil.copy(SAMPLES / "loop" / "ratio.py", tmp_path)
    shutil.copy(SAMPLES / "loop" / "offsets.py", tmp_path)
    run_python("ratio.py", cwd=tmp_path)
    result = subprocess.run([CDIP, "run", "ratio", *args], capture_output=True, text=True,
                            timeout=TIMEOUT, cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_watch_without_watchfiles_says_what_to_install(tmp_path):
    shutil.copy(SAMPLES / "loop" / "ratio.py", tmp_path)
    shutil.copy(SAMPLES / "loop" / "offsets.py", tmp_path)
    run_python("ratio.py", cwd=tmp_path)
    missing = tmp_path / "missing"
    missing.mkdir()
    # as when the package is not installed: its import fails
    (missing / "watchfiles.py").write_text("raise ImportError('No module named watchfiles')\n")
    result = subprocess.run([CDIP, "run", "ratio", "--watch"], capture_output=True, text=True,
                            timeout=TIMEOUT, cwd=tmp_path, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(missing)})
    assert result.returncode == 2
    assert "--watch needs watchfiles, which is not installed" in result.stderr
    assert "pip install 'ckpt[loop]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_until_error_rounds_open_the_post_mortem_then_watch_again(app):
    folder, helper = app
    child = watch(folder, "--mode", "until-error", "--until-pass")
    child.expect("entering post-mortem debugging")
    child.expect(r"\(Pdb\) ")
    child.sendline("p share")
    child.expect(r"\b0\b")
    child.expect(r"\(Pdb\) ")
    child.sendline("q")
    child.expect(FAIL)
    child.expect(WATCHING)
    helper.write_text(FIXED)
    child.expect("ratio now succeeds: it returned 10.0")
    child.expect("round 2: pass")
    assert finish(child) == 0


def test_sigterm_ends_the_watch_with_nothing_left(app):
    folder, _ = app
    child = watch(folder)
    child.expect(FAIL)
    child.expect(WATCHING)
    waiting = descendants(child)
    child.kill(signal.SIGTERM)
    assert finish(child) == 128 + signal.SIGTERM
    assert "Traceback" not in child.before
    assert_gone(waiting)


def test_a_save_that_cannot_be_imported_is_a_failed_round_saying_why(app):
    folder, helper = app
    child = watch(folder, "--until-pass")
    child.expect(FAIL)
    child.expect(WATCHING)
    helper.write_text("def offset(:\n")  # half typed
    child.expect(r"round 2: fail: importing \S+ raised SyntaxError")
    child.expect(WATCHING)
    helper.write_text(FIXED)
    child.expect("round 3: pass: ratio returned 10.0")
    assert finish(child) == 0


def test_an_edit_within_the_same_second_and_of_the_same_size_is_replayed(app):
    folder, helper = app
    saved = helper.stat()
    child = watch(folder, "--until-pass")
    child.expect(FAIL)  # offsets.py imported: its bytecode cached for this version
    child.expect(WATCHING)
    fixed = helper.read_text().replace("return 1", "return 0")
    assert len(fixed) == saved.st_size
    # as when the imported version's bytecode was cached, then the fix saved, all
    # within one second: Python's own check (the mtime in whole seconds, the size)
    # would take the cached bytecode for the fix
    cached = importlib.util.cache_from_source(str(helper))
    os.utime(cached, ns=(saved.st_atime_ns, saved.st_mtime_ns + 1))
    helper.write_text(fixed)
    os.utime(helper, ns=(saved.st_atime_ns, saved.st_mtime_ns + 2))
    child.expect("round 2: pass: ratio returned 10.0")
    assert finish(child) == 0


def test_a_handback_of_other_fields_or_types_is_read_for_what_it_holds(tmp_path):
    # The replay's interpreter may have another ckpt, whose report has other fields or
    # types: cdip takes what it knows and never fails on the rest (a traceback once).
    from ckpt.handback import Handback

    report = tmp_path / "handback.json"
    report.write_text('{"passed": true, "line": 5, "files": ["/a.py", 7], "project": 1, '
                      '"restart": true, "breakpoints": [{"file": "/a.py", "line": "3"}], '
                      '"new_field": 1}')
    back = Handback.read(str(report), 0)
    assert (back.passed, back.restart, back.status) == (True, True, 0)
    assert (back.line, back.files, back.project, back.breakpoints) == ("", [], None, [])
    for text in ("[1, 2]", "null", '{"passed": tru'):
        report.write_text(text)
        assert Handback.read(str(report), 3).status == 3


def test_watch_refuses_up_front_a_frame_that_is_a_lambda(tmp_path):
    # the replay would refuse it too, but then every round alike, for ever
    shutil.copy(SAMPLES / "resume" / "deep_call.py", tmp_path)
    shutil.copy(SAMPLES / "resume" / "helpers.py", tmp_path)
    assert run_python("deep_call.py", "lambda", "3", cwd=tmp_path).returncode == 1
    result = subprocess.run([CDIP, "run", "with_lambda", "--watch", "--frame", "1"],
                            capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert "cdip: error: --frame 1: frame 1, with_lambda.<locals>.<lambda>, is a lambda, " \
           "which cannot be re-called" in result.stderr
    assert "round 1" not in result.stdout + result.stderr  # no round was run
    assert "Traceback" not in result.stderr
