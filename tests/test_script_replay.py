"""Replaying the functions of scripts (issue 11, items 2 and 5): today's classes, closures
with their data, and an analysis script replayed without re-running its pipeline.

The samples are in tests/samples/scripts; each test runs a copy as `python script.py`
(so its definitions live in `__main__`), edits it, and replays it through the real CLI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES, run_python
from test_faithful import spawn
from test_replay import cdip, finish

SCRIPTS = SAMPLES / "scripts"


def sample(tmp_path: Path, name: str) -> Path:
    """A copy of a scripts/ sample in `tmp_path`."""
    copy = tmp_path / name
    shutil.copy(SCRIPTS / name, copy)
    return copy


def edit(script: Path, old: str, new: str) -> None:
    text = script.read_text()
    assert old in text
    script.write_text(text.replace(old, new))


# -- 2. today's classes ------------------------------------------------------------------


@pytest.fixture(params=[["steps.py"], ["-m", "steps"]], ids=["script", "dash-m"])
def steps(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """steps.py, failed once: Step([1, 2, 3]).run(Settings(threshold=3.0)) keeps nothing."""
    script = sample(tmp_path, "steps.py")
    assert run_python(*request.param, cwd=tmp_path).returncode == 1
    return script


def test_a_method_of_a_script_class_replays_with_todays_class(steps):
    edit(steps, "if v > settings.threshold", "if v >= settings.threshold")  # another method
    result = cdip("run", "Step.run", "--mode", "run")
    assert result.returncode == 0, result.stderr
    assert "self is today's Step: True" in result.stdout
    assert "settings is today's Settings: True" in result.stdout
    assert "Step.run returned 3.0" in result.stdout


def test_a_script_class_keeps_its_saved_state(steps):
    result = cdip("run", "Step.run", "--mode", "shell", "-c", "print(self.values, settings)",
                  "-c", "print(type(self) is Step, type(settings) is Settings)")
    assert result.returncode == 0, result.stderr
    assert "[1.0, 2.0, 3.0] Settings(threshold=3.0)" in result.stdout
    assert "True True" in result.stdout


def test_the_post_mortem_sees_todays_class(steps, tmp_path):
    child = spawn(tmp_path, "run", "Step.run")
    child.expect("ZeroDivisionError")
    child.expect(r"\(Pdb\) ")
    child.sendline("p isinstance(self, Step), type(self).kept is Step.kept")
    child.expect(r"\(True, True\)")
    child.expect(r"\(Pdb\) ")
    child.sendline("q")
    assert finish(child) == 1


def test_a_module_step_gets_todays_class_of_the_script_that_called_it(tmp_path):
    sample(tmp_path, "steplib.py")
    driver = sample(tmp_path, "driver.py")
    assert run_python("driver.py", cwd=tmp_path).returncode == 1
    edit(driver, 'return f"{self.size} in {self.parts} parts"', 'return "edited"')
    result = cdip("run", "configure", "--mode", "run")
    assert result.returncode == 1, result.stderr
    assert "config is today's: edited" in result.stdout
    assert "ZeroDivisionError" in result.stderr
    assert "driving" not in result.stdout  # the script's definitions only
    assert "skipped 2 top-level statements of driver.py (lines 14-15)" in result.stderr


def test_another_checkout_supplies_todays_class(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    for clone in (first, second):
        clone.mkdir()
        shutil.copy(SCRIPTS / "steps.py", clone)
        subprocess.run(["git", "init", "-q", str(clone)], check=True, timeout=60)
    assert run_python("steps.py", cwd=first).returncode == 1
    edit(second / "steps.py", "if v > settings.threshold", "if v >= settings.threshold")
    result = cdip("run", "Step.run", "--mode", "run", cwd=second)
    assert result.returncode == 0, result.stderr
    assert "self is today's Step: True" in result.stdout
    assert "Step.run returned 3.0" in result.stdout


def test_a_script_class_renamed_since_is_a_clear_error(steps):
    edit(steps, "class Settings:", "class Options:")
    edit(steps, "isinstance(settings, Settings)", "isinstance(settings, Options)")
    result = cdip("run", "Step.run", "--mode", "run")
    assert result.returncode == 2, result.stderr
    assert "argument 'settings' cannot be loaded" in result.stderr
    assert "no longer defines the class Settings" in result.stderr
    assert "Traceback" not in result.stderr


def test_load_elsewhere_falls_back_to_the_saved_class(steps, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    steps.unlink()
    code = ("import ckpt; c = ckpt.load('Step.run'); step, settings = c.args; "
            "print(type(step).__name__, step.values, settings, step.kept(settings))")
    result = run_python("-c", code, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Step [1.0, 2.0, 3.0] Settings(threshold=3.0) []"


# -- 2. closures -------------------------------------------------------------------------


def test_a_closure_over_a_numpy_array_replays_with_its_data(tmp_path):
    pytest.importorskip("numpy")
    sample(tmp_path, "closures.py")
    assert run_python("closures.py", "array", cwd=tmp_path).returncode == 1
    result = cdip("run", "make_scaler.<locals>.scale", "--mode", "run")
    assert result.returncode == 1, result.stderr
    assert "ValueError: too big: 20.0" in result.stderr
    assert "UnpicklingError" not in result.stderr


def test_a_closure_that_could_not_be_saved_is_exit_2(tmp_path):
    pytest.importorskip("numpy")
    sample(tmp_path, "closures.py")
    assert run_python("closures.py", "lock", cwd=tmp_path).returncode == 1
    result = cdip("run", "make_guarded.<locals>.guarded", "--mode", "run")
    assert result.returncode == 2, result.stderr
    assert ("make_guarded.<locals>.guarded cannot be replayed: it has no importable "
            "definition, and its copy could not be saved at capture (TypeError: cannot "
            "pickle '_thread.lock' object)") in result.stderr
    assert "not callable" not in result.stderr + result.stdout


def test_a_closure_whose_copy_cannot_be_loaded_is_exit_2(tmp_path):
    pytest.importorskip("numpy")
    sample(tmp_path, "closures.py")
    helper = sample(tmp_path, "closure_helper.py")
    assert run_python("closures.py", "module", cwd=tmp_path).returncode == 1
    assert cdip("run", "make_checker.<locals>.check", "--mode", "run").returncode == 1
    helper.unlink()
    result = cdip("run", "make_checker.<locals>.check", "--mode", "run")
    assert result.returncode == 2, result.stderr
    assert ("make_checker.<locals>.check cannot be replayed: the copy saved at capture "
            "cannot be loaded (ModuleNotFoundError: No module named 'closure_helper')"
            in result.stderr)
    assert "Traceback" not in result.stderr


# -- 5. analysis scripts without a main guard --------------------------------------------


@pytest.fixture
def analysis(tmp_path: Path) -> Path:
    """analysis.py, whose pipeline ran once and failed in summarise; its marks removed."""
    script = sample(tmp_path, "analysis.py")
    assert run_python("analysis.py", "2.0", cwd=tmp_path).returncode == 1
    (tmp_path / "pipeline-ran.mark").unlink()
    return script


SKIPPED = ("note: skipped 5 top-level statements of analysis.py (lines 55-59): they are "
           "not definitions; --run-script-top-level runs them")


def test_a_script_without_a_main_guard_replays_without_its_pipeline(analysis, tmp_path):
    result = cdip("run", "summarise", "--mode", "run")
    assert result.returncode == 1, result.stderr
    assert "summarise raised ValueError: min() arg is an empty sequence" in result.stdout
    assert SKIPPED in result.stderr
    assert "running the pipeline" not in result.stdout
    assert not (tmp_path / "pipeline-ran.mark").exists()
    assert "importing" not in result.stderr


def test_a_script_without_a_main_guard_opens_the_debugger(analysis, tmp_path):
    child = spawn(tmp_path, "run", "summarise")
    child.expect("skipped 5 top-level statements")
    child.expect("ValueError: min")
    child.expect(r"\(Pdb\) ")
    child.sendline("p kept, threshold, registry.steps")
    child.expect(r"\(\[\], 2\.0, \['summarise'\]\)")
    child.expect(r"\(Pdb\) ")
    child.sendline("q")
    assert finish(child) == 1
    assert not (tmp_path / "pipeline-ran.mark").exists()


def test_the_fixed_step_of_an_unguarded_script_succeeds(analysis):
    edit(analysis, "if v > threshold]", "if v > threshold] or values")
    result = cdip("run", "summarise", "--mode", "run")
    assert result.returncode == 0, result.stderr
    assert "summarise returned {'high': 0.9, 'low': 0.0, 'mean': 0.45" in result.stdout


def test_a_global_that_only_the_pipeline_assigns_is_named(analysis):
    result = cdip("run", "report", "--mode", "run")
    assert result.returncode == 1, result.stderr
    assert "NameError: name 'values' is not defined" in result.stderr
    assert ("note: report uses values, which only a skipped statement assigns (line 56)"
            in result.stderr)


def test_a_script_run_with_dash_m_replays_without_its_pipeline(tmp_path):
    sample(tmp_path, "analysis.py")
    assert run_python("-m", "analysis", "2.0", cwd=tmp_path).returncode == 1
    (tmp_path / "pipeline-ran.mark").unlink()
    result = cdip("run", "summarise", "--mode", "run")
    assert result.returncode == 1, result.stderr
    assert SKIPPED in result.stderr
    assert not (tmp_path / "pipeline-ran.mark").exists()


def test_run_script_top_level_runs_the_whole_script(analysis, tmp_path):
    result = cdip("run", "report", "--mode", "run", "--run-script-top-level")
    assert result.returncode == 2, result.stderr
    assert (tmp_path / "pipeline-ran.mark").exists()
    assert "running the pipeline" in result.stdout
    assert f"importing {analysis} raised ValueError" in result.stderr
    assert "skipped" not in result.stderr


def test_a_function_defined_by_a_skipped_statement_says_so(tmp_path):
    (tmp_path / "looped.py").write_text(
        "import ckpt\n"
        "for power in [2]:\n"
        "    @ckpt.ckpt\n"
        "    def raise_to(x):\n"
        "        return x ** 2\n"
        "raise_to(3)\n")
    run_python("looped.py", cwd=tmp_path, check=True)
    result = cdip("run", "raise_to", "--mode", "run")
    assert result.returncode == 2, result.stderr
    assert "raise_to no longer exists" in result.stderr
    assert "defined by a top-level statement that was skipped" in result.stderr
    whole = cdip("run", "raise_to", "--mode", "run", "--run-script-top-level")
    assert whole.returncode == 0, whole.stderr
    assert "raise_to returned 9" in whole.stdout


def test_a_guarded_script_skips_nothing(tmp_path):
    sample(tmp_path, "steps.py")
    run_python("steps.py", cwd=tmp_path)
    result = cdip("run", "Step.run", "--mode", "run")
    assert "skipped" not in result.stderr


def test_definitions_only_keeps_what_definitions_need(tmp_path):
    """The rules, on one script: which statements run, which are skipped."""
    from _ckpt_runner.definitions import split

    source = (SCRIPTS / "analysis.py").read_text()
    plan = split(source, "analysis.py")
    kept = {line for node in plan.kept for line in range(node.lineno, node.end_lineno + 1)}
    lines = source.splitlines()
    assert [lines[n - 1] for n in (12, 17, 18, 20, 34)] == [
        "try:", "HERE = Path(__file__).parent", "THRESHOLD = 0.5",
        "log = logging.getLogger(__name__)", "registry = Registry()"]
    assert {12, 17, 18, 20, 34} <= kept  # registry: the decorators below need it
    assert [node.lineno for node in plan.skipped] == [55, 56, 57, 58, 59]


@pytest.mark.parametrize(("statement", "runs"), [
    ("x = 1", True), ("x: int = 2", True), ("x = y = (1, 'a', [2.5, None])", True),
    ("x = {'a': -1, **{}}", True), ("x = 2 ** 10 if True else 0", True),
    ("x = lambda v: v.strip()", True), ("x = int('3')", True),
    ("x = os.path.join('a', 'b')", True), ("x = os.environ.get('HOME')", True),
    ("x = re.compile('a+')", True), ("x = f'{1}'", True),
    ("x = load()", False), ("x = open('f').read()", False), ("print(1)", False),
    ("for i in range(3): pass", False), ("with open('f'): pass", False),
    ("x = [load() for _ in range(2)]", False), ("x = int(load())", False),
    ("if __name__ == '__main__': main()", None),
])
def test_which_statements_are_definitions(statement, runs):
    from _ckpt_runner.definitions import split

    plan = split(f"import os, re\n{statement}\n", "s.py")
    lines = {node.lineno for node in plan.kept}, {node.lineno for node in plan.skipped}
    assert lines == (({1, 2}, set()) if runs else ({1}, {2}) if runs is False else ({1}, set()))


def test_what_a_definition_needs_runs_and_what_the_pipeline_made_does_not():
    from _ckpt_runner.definitions import split

    source = ("df = load()\n"            # 1 the pipeline
              "cols = df.columns\n"      # 2 a constant made from it: skipped too
              "app = make_app()\n"       # 3 a call, but the decorator below needs it
              "route = app.route\n"      # 4 made from it: runs with it
              "@route('/')\n"
              "def index(): pass\n")     # 6
    plan = split(source, "s.py")
    assert [node.lineno for node in plan.kept] == [3, 4, 6]
    assert [node.lineno for node in plan.skipped] == [1, 2]


def test_a_long_chain_of_needs_is_followed():
    from _ckpt_runner.definitions import split

    chain = "".join(f"r{i} = r{i - 1}\n" for i in range(1, 3000))
    plan = split(f"r0 = make()\n{chain}@r2999.step\ndef g(): pass\n", "s.py")
    assert not plan.skipped


def test_a_module_function_replays_without_importing_ast(tmp_path):
    """The module functions' path does not parse: ast is imported only for scripts."""
    import json

    import ckpt
    from ckpt.supervise import RUNNER

    shutil.copy(SAMPLES / "faithful" / "signature.py", tmp_path)
    run_python("-c", "import signature; signature.compute(1, 0)", cwd=tmp_path, check=True)
    (entry,) = ckpt.checkpoints()
    options = json.dumps({"store": os.environ["PYCKPT_DIR"], "id": entry.id, "mode": "run"})
    result = subprocess.run([sys.executable, "-X", "importtime", *RUNNER, options],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={**os.environ, "PYCKPT_DISABLE": "1"})
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "ast" not in imported
    assert "_ckpt_runner.definitions" not in imported
    assert "cloudpickle" not in imported


def test_the_demo_ends_with_the_fixed_replay():
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([str(root / "scripts" / "demo")], capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL,
                            env={**os.environ, "CKPT_DEMO_INSTALLED": "1"})
    assert result.returncode == 0, result.stderr
    assert "(exit status 1: it still fails)" in result.stdout
    tail = result.stdout.split("(exit status 1: it still fails)", 1)[1]
    assert "summarise returned" in tail
    assert "now succeeds" in tail or "exit status 0" in tail
