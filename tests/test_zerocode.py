"""`ckpt run script.py`, `ckpt run -m module`: a program run unchanged, each of its frames saved."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROGRAMS, SAMPLES, run_python

from ckpt.zerocode import REPLAY_MODES, requested

SAMPLE = SAMPLES / "zerocode"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the sample programs, to edit."""
    shutil.copytree(SAMPLE, tmp_path / "project")
    return tmp_path / "project"


def run(*args: str, cwd: Path, program: str = "python -m ckpt") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROGRAMS[program], *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def listing() -> list[dict]:
    result = run("info", "--json", cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def detail(name: str) -> dict:
    result = run("info", name, "--json", cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def arguments(name: str) -> dict[str, str]:
    return {argument["name"]: argument["repr"] for argument in detail(name)["arguments"]}


def replay(name: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run("run", name, "--mode", "run", cwd=cwd, program="cdip")


def saved_lines(stderr: str) -> list[str]:
    """What ckpt added after the program's own stderr: its summary."""
    return stderr[stderr.index("ckpt: saved"):].splitlines()


# -- running a program as python runs it -----------------------------------------------------


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_a_script_sees_what_python_gives_it(project: Path, program: str):
    plain = run_python("probe.py", "one", "-m", "run", cwd=project)
    ours = run("run", "probe.py", "one", "-m", "run", cwd=project, program=program)
    assert plain.returncode == 3  # the sample's own sys.exit(3)
    assert (ours.returncode, ours.stdout, ours.stderr) == (3, plain.stdout, plain.stderr)
    assert "'main_is_us': True" in ours.stdout


@pytest.mark.parametrize("program", ["ckpt", "python -m ckpt"])
def test_a_module_sees_what_python_dash_m_gives_it(project: Path, program: str):
    (project / "zpkg" / "probe.py").write_text((project / "probe.py").read_text())
    plain = run_python("-m", "zpkg.probe", "two", cwd=project)
    ours = run("run", "-m", "zpkg.probe", "two", cwd=project, program=program)
    assert plain.returncode == 3
    assert (ours.returncode, ours.stdout, ours.stderr) == (3, plain.stdout, plain.stderr)
    assert "'spec': 'zpkg.probe'" in ours.stdout


def test_ctrl_c_ends_it_as_it_ends_python(project: Path):
    script = project / "interrupted.py"
    script.write_text("def wait(seconds):\n    raise KeyboardInterrupt\n\nwait(5)\n")
    plain = run_python(str(script), cwd=project)
    ours = run("run", str(script), cwd=project)
    assert plain.returncode == ours.returncode == -signal.SIGINT  # killed by SIGINT, as python
    assert ours.stderr == plain.stderr
    assert listing() == []  # Ctrl-C is not a crash: nothing saved (as the decorator)


@pytest.mark.parametrize(("source", "error"), [
    (b"x = 1\ndef f(:\n    pass\n", "SyntaxError: invalid syntax\n"),
    # Windows-1252 without a coding line: Python's words, not compile()'s
    (b"x = 1\ny = 2\nname = 'caf\xe9'\n", "on line 3, but no encoding declared; see "
     "https://peps.python.org/pep-0263/ for details\n"),
    (b"x = 1\ny = 'a\x00b'\n", "    y = 'a\nSyntaxError: source code cannot contain null bytes\n"),
])
def test_a_syntax_error_is_shown_as_python_shows_it(project: Path, source: bytes, error: str):
    (project / "broken.py").write_bytes(source)
    plain = run_python("broken.py", cwd=project)
    ours = run("run", "broken.py", cwd=project)
    assert plain.returncode == ours.returncode == 1
    assert ours.stderr == plain.stderr  # no traceback of ours above it
    assert plain.stderr.endswith(error)


# -- the crash: one checkpoint per frame of theirs --------------------------------------------


def test_a_crash_three_deep_saves_each_frame_and_replays_with_edited_code(project: Path):
    plain = run_python("pipeline3.py", "3,x,5", cwd=project)
    ours = run("run", "pipeline3.py", "3,x,5", cwd=project)
    assert plain.returncode == ours.returncode == 1
    assert ours.stdout == plain.stdout == "loading ['3,x,5']\n"
    assert ours.stderr.startswith(plain.stderr)  # the traceback exactly as python prints it
    assert plain.stderr.startswith("Traceback (most recent call last):\n  File ")
    summary = saved_lines(ours.stderr)
    assert [line.split()[2] for line in summary[1:]] == ["main", "load", "parse"]

    saved = listing()
    # outermost first; the module's top level (`<module>`) is not a function: not saved
    assert [(c["name"], c["function"]) for c in saved] == [
        ("main", "__main__:main"), ("load", "__main__:load"), ("parse", "__main__:parse")]
    assert {c["exception"]["type"] for c in saved} == {"ZeroDivisionError"}
    assert arguments("main") == {"argv": repr(["pipeline3.py", "3,x,5"])}
    assert arguments("load") == {"path": "'3,x,5'", "retries": "1"}
    # `text` was reassigned in parse before the error: its value then is what is saved
    assert arguments("parse") == {"text": "'3,0,5'", "sep": "','"}
    assert [f["function"] for f in detail("parse")["frames"]] == ["parse", "<listcomp>"]
    assert [f["function"] for f in detail("main")["frames"]][:3] == ["main", "load", "parse"]

    before = replay("parse", project)
    assert before.returncode == 1
    assert "ZeroDivisionError" in before.stderr
    # said in one line: these arguments are what its parameters held at the error
    assert ("parse was saved from the crash's stack, not by a decorator: its arguments are its "
            "parameters' values at the error, from its frame's locals (not necessarily the "
            "values it was called with)\n") in before.stderr
    source = project / "pipeline3.py"
    source.write_text(source.read_text().replace("for field in fields]",
                                                 "for field in fields if int(field)]"))
    after = replay("parse", project)
    assert after.returncode == 0, after.stderr
    assert "parse returned [3.3333333333333335, 2.0]" in after.stdout
    assert "source of parse changed since capture" in after.stderr
    outer = replay("main", project)  # the outermost frame re-runs the whole call, fixed
    assert outer.returncode == 0, outer.stderr
    assert "loading ['3,x,5']" in outer.stdout


def test_a_module_run_with_dash_m_saves_its_frames_under_its_module(project: Path):
    ours = run("run", "-m", "zpkg.step", "ab", cwd=project, program="ckpt")
    assert ours.returncode == 1
    assert ours.stdout == "step of ['ab'] spec zpkg.step\n"
    assert '  File "' + str(project / "zpkg" / "step.py") + '", line 14, in <module>' in ours.stderr
    assert "frozen runpy" not in ours.stderr and "ckpt/" not in ours.stderr.split("ckpt: saved")[0]
    assert [(c["name"], c["function"]) for c in listing()] == [("step", "zpkg.step:step")]
    assert arguments("step") == {"word": "'ab'", "times": "2"}
    module = project / "zpkg" / "step.py"
    module.write_text(module.read_text().replace("(len(word) - 2)", "(len(word) - 1)"))
    fixed = replay("step", project)
    assert fixed.returncode == 0, fixed.stderr
    assert "step returned 0.0" in fixed.stdout


def test_every_shape_of_frame(project: Path):
    """A method, a class method, a recursion (saved once, innermost), a closure, a deleted
    parameter, @ckpt."""
    ours = run("run", "shapes.py", cwd=project)
    assert ours.returncode == 1
    names = [c["name"] for c in listing()]
    # `decorated` is saved by its decorator, and not a second time
    assert sorted(names) == ["Ledger.tally", "Ledger.total", "countdown", "decorated",
                             "make_checker.<locals>.check"]
    assert arguments("Ledger.tally") == {"entries": "[1, 2]"}  # cls: the class it is bound to
    assert arguments("countdown")["n"] == "0"  # the innermost call of the recursion
    assert arguments("Ledger.total")["start"] == "0"
    check = arguments("make_checker.<locals>.check")
    assert check["word"] == "'bad'" and check["rest"] == "()" and check["options"] == "{}"
    assert "deleted it (del) before the error" in check["strict"]
    for name in ("Ledger.total", "Ledger.tally", "countdown", "check"):  # each replays, failing
        result = replay(name, project)
        assert result.returncode == 1, result.stderr
        assert result.stdout.endswith("raised ZeroDivisionError: division by zero\n")
        assert "saved from the crash's stack, not by a decorator" in result.stderr
        assert "parameters of" not in result.stderr  # bound as saved: nothing changed
    assert "saved from the crash's stack" not in replay("decorated", project).stderr


# -- unittest ---------------------------------------------------------------------------------


def test_unittest_failures_are_saved_and_replay(project: Path):
    plain = run_python("-m", "unittest", "test_ratios", cwd=project)
    ours = run("run", "-m", "unittest", "test_ratios", cwd=project)
    assert plain.returncode == ours.returncode == 1
    assert ours.stdout == plain.stdout
    assert ours.stderr.startswith(plain.stderr.split("Ran 4 tests")[0])
    assert "FAILED (failures=3, errors=1)" in ours.stderr
    summary = saved_lines(ours.stderr)
    assert summary[0].startswith("ckpt: saved 4 checkpoint(s) of failing tests")
    names = sorted(c["name"] for c in listing())  # test_each: its first failing subtest only
    assert names == ["TestRatios.test_each", "TestRatios.test_half", "TestRatios.test_zero",
                     "ratio"]
    assert arguments("ratio") == {"a": "10", "b": "0"}

    failing = replay("TestRatios.test_half", project)
    assert failing.returncode == 1
    assert "AssertionError: 2.0 != 5" in failing.stderr
    tests = project / "test_ratios.py"
    tests.write_text(tests.read_text().replace("(self.base, 5), 5)", "(self.base, 5), 2)"))
    assert replay("TestRatios.test_half", project).returncode == 0


def test_pytest_run_by_ckpt_saves_its_failing_tests(project: Path):
    ours = run("run", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_steps.py",
               cwd=project)
    assert ours.returncode == 1
    assert "1 failing test(s) saved as checkpoints" in ours.stdout  # the pytest plugin's summary
    assert "Warning" not in ours.stdout  # (pytest cannot rewrite ckpt, imported first: fine)
    assert [c["name"] for c in listing()] == ["test_steps.py::test_helper"]


# -- `run NAME` replays, `run script.py` runs: the ambiguous cases ----------------------------


@pytest.mark.parametrize(("arguments", "expected"), [
    (["run"], None),
    (["run", "parse"], None),
    (["run", "parse", "-m", "run"], None),
    (["run", "-m", "run"], None),  # -m followed by a mode: the mode, as ever
    (["run", "-m", "shell", "parse"], None),
    (["run", "-mrun", "parse"], None),
    (["run", "--mode", "run"], None),
    (["run", "--dir", "store", "parse"], None),
    (["run", "-m"], None),
    (["run", "-x.py"], None),
    (["run", "--", "x.py"], None),  # after --: a name
    (["info", "x.py"], None),
    (["run", "x.py"], ("x.py", None, [], None)),
    (["run", "dir/x.py", "-m", "run", "--dir", "d"], ("dir/x.py", None, ["-m", "run", "--dir", "d"],
                                                      None)),
    (["run", "--dir", "store", "x.py", "a"], ("x.py", None, ["a"], "store")),
    (["run", "--dir=store", "-m", "pkg.mod"], (None, "pkg.mod", [], "store")),
    (["run", "-m", "unittest", "-v"], (None, "unittest", ["-v"], None)),
    (["run", "-mpkg", "run"], (None, "pkg", ["run"], None)),
    (["run", "-m", "runner"], (None, "runner", [], None)),
])
def test_which_run_is_meant(arguments: list[str], expected: tuple | None):
    found = requested(arguments)
    got = None if found is None else (found.script, found.module, found.arguments, found.store)
    assert got == expected


def test_the_modes_it_leaves_to_replay_are_the_replay_modes():
    from ckpt.commands import MODES

    assert set(REPLAY_MODES) == set(MODES)


def test_run_dash_m_mode_still_replays(project: Path):
    assert run("run", "pipeline3.py", cwd=project).returncode == 1
    (project / "run.py").write_text("raise SystemExit('a module named like a mode ran')\n")
    for arguments in (["-m", "run", "parse"], ["-mrun", "parse"], ["-m", "run"]):
        result = run("run", *arguments, cwd=project, program="cdip")
        assert result.returncode == 1, result.stderr
        assert "replaying " in result.stderr and ", mode run" in result.stderr
    assert "a module named like a mode" not in result.stderr


def test_a_checkpoint_named_like_a_script_replays_after_dash_dash(project: Path):
    import ckpt

    ckpt.ckpt(lambda value: value * 2, name="step.py")(21)
    result = run("run", "--mode", "run", "--", "step.py", cwd=project, program="cdip")
    assert result.returncode == 0, result.stderr
    assert "step.py returned 42" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["run", "missing.py"], "error: cannot run missing.py: No such file or directory"),
    (["run", "-m", "no_such_module"], "error: cannot run -m no_such_module: No module named"),
])
def test_no_such_program_is_a_usage_error(project: Path, args: list[str], message: str):
    result = run(*args, cwd=project, program="ckpt")
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 2  # the error and its hint


def test_help_says_how_run_tells_a_program_from_a_name(project: Path):
    result = run("run", "--help", cwd=project, program="cdip")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "cdip run [--dir PATH] script.py [ARGS...]" in text
    assert "when its first argument ends in .py, or is -m MODULE where MODULE is not a mode" in text


# -- from inside a program --------------------------------------------------------------------


def test_install_excepthook_saves_the_main_thread_and_other_threads(tmp_path: Path):
    script = tmp_path / "hooked.py"
    script.write_text(
        "import threading, ckpt\n"
        "ckpt.install_excepthook()\n"
        "def work(item):\n    return {}[item]\n"
        "thread = threading.Thread(target=work, args=('in a thread',), name='worker')\n"
        "thread.start(); thread.join()\n"
        "def fail(value):\n    return 1 / value\n"
        "fail(0)\n")
    result = run_python(str(script), cwd=tmp_path)
    assert result.returncode == 1
    assert "Exception in thread worker" in result.stderr
    assert "ckpt: saved 1 checkpoint(s) of this error in thread worker" in result.stderr
    assert "ZeroDivisionError: division by zero\nckpt: saved 1 checkpoint(s)" in result.stderr
    assert [c["name"] for c in listing()] == ["work", "fail"]
    assert arguments("work") == {"item": "'in a thread'"}


def test_a_program_that_installs_the_hook_itself_is_saved_once_by_ckpt_run(tmp_path: Path):
    script = tmp_path / "hooked.py"
    script.write_text("import ckpt\nckpt.install_excepthook()\n"
                      "def fail(value):\n    return 1 / value\n\nfail(0)\n")
    result = run("run", str(script), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("ckpt: saved") == 1
    assert [c["name"] for c in listing()] == ["fail"]


def test_nothing_is_saved_when_capture_is_disabled(project: Path):
    result = subprocess.run([sys.executable, "-m", "ckpt", "run", "pipeline3.py"], cwd=project,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYCKPT_DISABLE": "1"})
    assert result.returncode == 1
    assert "ckpt: saved" not in result.stderr
    assert listing() == []
