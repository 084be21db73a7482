"""`cdip pin`: a checkpoint becomes a pytest test that fails until the code is fixed.

The written test is run by a real `python -m pytest`, as another user would run it:
another HOME (no ckpt key), no store, and from another checkout of the project.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN, SAMPLES, run_python

CDIP = str(BIN / "cdip")
FIX = ("return self.total / parts", "return self.total / parts if parts else -1.0")


def cdip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CDIP, *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with a tests/ folder whose pipeline failed once, leaving a checkpoint."""
    folder = tmp_path / "project"
    (folder / "tests").mkdir(parents=True)
    shutil.copy(SAMPLES / "resume" / "deep_call.py", folder)
    result = run_python("deep_call.py", "pipeline", "3", cwd=folder)
    assert result.returncode == 1, result.stderr
    return folder


def pytest_as_someone_else(folder: Path, test: str,
                           tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`python -m pytest TEST` with a fresh HOME: no ckpt key, no store of theirs.

    No plugin is loaded (not even ckpt's): the written test needs only ckpt itself.
    """
    home = tmp_path / "someone-else"
    home.mkdir(exist_ok=True)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("PYCKPT_", "XDG_"))}
    env.update(HOME=str(home), PYCKPT_DIR=str(home / "store"), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                          capture_output=True, text=True, timeout=120, cwd=folder, env=env)


def fix(script: Path) -> None:
    script.write_text(script.read_text().replace(*FIX))


def test_the_pinned_test_fails_until_the_fix_then_passes_elsewhere(project, tmp_path):
    pinned = cdip("pin", "pipeline", cwd=project)
    assert pinned.returncode == 0, pinned.stderr
    assert "pinned pipeline" in pinned.stdout
    test, bundle = project / "tests" / "test_pin_pipeline.py", project / "tests" / \
        "test_pin_pipeline.ckpt"
    assert test.is_file() and bundle.is_file()
    # another checkout of the project, run by someone without our key or store
    clone = tmp_path / "clone"
    shutil.copytree(project, clone)
    shutil.rmtree(project)  # the code and the checkpoint's recorded paths are gone
    before = pytest_as_someone_else(clone, "tests/test_pin_pipeline.py", tmp_path)
    assert before.returncode == 1, before.stdout + before.stderr
    assert "ZeroDivisionError: division by zero" in before.stdout
    assert "deep_call.py:37: ZeroDivisionError" in before.stdout  # the user's own frame
    fix(clone / "deep_call.py")
    after = pytest_as_someone_else(clone, "tests/test_pin_pipeline.py", tmp_path)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "1 passed" in after.stdout


def test_a_modules_function_is_imported_by_name_from_pytests_path(project, tmp_path):
    # the newest: captured as deep_call:pipeline (a module), not as the script's __main__
    module_run = run_python("-c", "import deep_call; deep_call.pipeline(3)", cwd=project)
    assert module_run.returncode == 1
    assert cdip("pin", "-o", "tests/test_module.py", cwd=project).returncode == 0
    assert "SCRIPT" not in (project / "tests" / "test_module.py").read_text()
    before = pytest_as_someone_else(project, "tests/test_module.py", tmp_path)
    assert before.returncode == 1 and "ZeroDivisionError" in before.stdout
    fix(project / "deep_call.py")
    after = pytest_as_someone_else(project, "tests/test_module.py", tmp_path)
    assert after.returncode == 0, after.stdout + after.stderr


def test_a_module_not_on_pytests_path_is_said_so_not_taken_from_the_recorded_path(project,
                                                                                  tmp_path):
    module_run = run_python("-c", "import deep_call; deep_call.pipeline(3)", cwd=project)
    assert module_run.returncode == 1
    assert cdip("pin", "-o", "tests/test_module.py", cwd=project).returncode == 0
    fix(project / "deep_call.py")  # the recorded path holds a fixed module: never used
    elsewhere = pytest_as_someone_else(tmp_path, str(project / "tests" / "test_module.py"),
                                       tmp_path)
    assert elsewhere.returncode == 1
    assert ("CkptError: cannot import deep_call, which defines pipeline, from this test's "
            "sys.path") in elsewhere.stdout


def test_expect_asserts_the_value_returned(project, tmp_path):
    fixed = cdip("pin", "pipeline", "--expect", "-1.0", cwd=project)
    assert fixed.returncode == 0, fixed.stderr
    other = cdip("pin", "pipeline", "-o", "tests/test_other.py", "--expect", "2.5", cwd=project)
    assert other.returncode == 0, other.stderr
    # a value whose repr is no literal (inf) is written as the literal given
    infinite = cdip("pin", "pipeline", "-o", "tests/test_inf.py", "--expect=1e999", cwd=project)
    assert infinite.returncode == 0, infinite.stderr
    assert "EXPECTED = -1.0" in (project / "tests" / "test_pin_pipeline.py").read_text()
    assert "EXPECTED = literal_eval('1e999')" in (project / "tests" / "test_inf.py").read_text()
    fix(project / "deep_call.py")
    three = pytest_as_someone_else(project, "tests", tmp_path)
    assert three.returncode == 1
    assert "2 failed, 1 passed" in three.stdout
    assert "FAILED tests/test_other.py::" in three.stdout  # the right value passed
    assert "assert -1.0 == 2.5" in three.stdout
    assert "assert -1.0 == inf" in three.stdout


def test_a_bundle_swapped_for_another_is_refused_unread(project, tmp_path):
    assert cdip("pin", "pipeline", cwd=project).returncode == 0
    # a valid bundle of another checkpoint, put in place of the pinned one
    assert run_python("deep_call.py", "units", "3", cwd=project).returncode == 1
    bundle = project / "tests" / "test_pin_pipeline.ckpt"
    bundle.unlink()
    assert cdip("export", "units", "-o", str(bundle), cwd=project).returncode == 0
    fix(project / "deep_call.py")
    result = pytest_as_someone_else(project, "tests/test_pin_pipeline.py", tmp_path)
    assert result.returncode == 1
    assert "is not the bundle this test pins (its SHA-256 differs): refused unread" \
        in result.stdout
    assert runs_of_units(project) == 1  # nothing of the swapped bundle ran


def runs_of_units(folder: Path) -> int:
    # the marker counts every run of an outer step: two failed runs, nothing since
    return len((folder / "outer-ran").read_text().splitlines()) - 1


def test_running_the_pinned_test_saves_nothing_and_makes_no_key(tmp_path):
    """As a replay: capture is off, so a decorated function it calls writes no checkpoint."""
    shutil.copy(SAMPLES / "resume" / "two_steps.py", tmp_path)
    assert run_python("two_steps.py", cwd=tmp_path).returncode == 1
    assert cdip("pin", "outer", cwd=tmp_path).returncode == 0
    ran = pytest_as_someone_else(tmp_path, "test_pin_outer.py", tmp_path)
    assert ran.returncode == 1
    assert "ZeroDivisionError" in ran.stdout
    home = tmp_path / "someone-else"
    assert sorted(path.name for path in home.iterdir()) == []  # no store, no key


def test_expect_must_be_a_literal_and_nothing_is_written(project):
    result = cdip("pin", "pipeline", "--expect", "__import__('os').getcwd()", cwd=project)
    assert result.returncode == 2
    assert "cdip: error: --expect __import__('os').getcwd(): not a Python literal" \
        in result.stderr
    assert list((project / "tests").iterdir()) == []


@pytest.mark.parametrize(("output", "message"), [
    ("missing/test_x.py", "-o missing/test_x.py: its directory does not exist"),
    ("missing/", "-o missing/: no such directory"),
    ("tests/test_x.txt", "-o tests/test_x.txt: a test file's name ends in .py"),
    ("deep_call.py", "deep_call.py already exists: nothing was written"),
])
def test_a_bad_output_path_is_one_clear_error_and_nothing_is_written(project, output, message):
    before = sorted(project.rglob("*"))
    result = cdip("pin", "pipeline", "-o", output, cwd=project)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == f"cdip: error: {message}"
    assert len(result.stderr.splitlines()) <= 2
    assert sorted(project.rglob("*")) == before


def test_an_existing_test_is_never_overwritten(project):
    test = project / "tests" / "test_pin_pipeline.py"
    test.write_text("# mine\n")
    result = cdip("pin", "pipeline", cwd=project)
    assert result.returncode == 2
    assert "already exists: nothing was written" in result.stderr
    assert test.read_text() == "# mine\n"
    assert not (project / "tests" / "test_pin_pipeline.ckpt").exists()


def test_a_name_with_quotes_cannot_write_code_into_the_test(tmp_path):
    script = tmp_path / "named.py"
    script.write_text('import ckpt\n\n\n@ckpt.ckpt(name=\'x"""\\nimport os; os._exit(7)\\n#\')\n'
                      "def step(n):\n    return n\n\n\nstep(1)\n")
    assert run_python(str(script), cwd=tmp_path).returncode == 0
    result = cdip("pin", "-o", "test_named.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ran = pytest_as_someone_else(tmp_path, "test_named.py", tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr  # not 7
    assert "1 passed" in ran.stdout


def test_a_long_name_gives_a_file_name_the_file_system_takes(tmp_path):
    script = tmp_path / "named.py"
    script.write_text(f"import ckpt\n\n\n@ckpt.ckpt(name={'step' * 100!r})\n"
                      "def step(n):\n    return n\n\n\nstep(1)\n")
    assert run_python(str(script), cwd=tmp_path).returncode == 0
    result = cdip("pin", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / f"test_pin_{'step' * 20}.py").is_file()


def test_pinning_a_checkpoint_saved_by_ckpt_run_says_whose_values_it_calls_with(tmp_path):
    shutil.copy(SAMPLES / "zerocode" / "pipeline3.py", tmp_path)
    crashed = subprocess.run([str(BIN / "ckpt"), "run", "pipeline3.py", "3,x,5"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert crashed.returncode == 1
    result = cdip("pin", "parse", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("note: parse was saved from the crash's stack: the pinned call's arguments are its "
            "parameters' values at the error") in result.stderr
    ran = pytest_as_someone_else(tmp_path, "test_pin_parse.py", tmp_path)
    assert ran.returncode == 1 and "ZeroDivisionError" in ran.stdout


def test_pinning_a_function_without_a_definition_to_import_says_fixes_are_not_seen(tmp_path):
    typed = "import ckpt\n@ckpt.ckpt\ndef step(n):\n    return 1 / n\nstep(0)\n"
    assert run_python("-c", typed, cwd=tmp_path).returncode == 1
    result = cdip("pin", "step", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("note: step was defined by `python -c`: replaying the copy saved at capture (edits "
            "are not picked up): the pinned test replays that copy, so it will not see a fix"
            ) in result.stderr
