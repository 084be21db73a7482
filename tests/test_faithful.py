"""Faithful replay (issue 11): the saved inputs, today's code, the right place, or a clear word.

Each test reproduces a case where `cdip run` once gave a confident answer about the
wrong inputs, the wrong code or the wrong frame; samples are in tests/samples/faithful.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest
from conftest import BIN, SAMPLES, run_python
from test_replay import cdip, finish

import ckpt

CDIP = str(BIN / "cdip")
FAITHFUL = SAMPLES / "faithful"


def sample(tmp_path: Path, name: str) -> Path:
    """A copy of a faithful/ sample in `tmp_path`."""
    copy = tmp_path / name
    shutil.copy(FAITHFUL / name, copy)
    return copy


def spawn(cwd: Path, *args: str, env: dict[str, str] | None = None,
          log: Path | None = None) -> pexpect.spawn:
    """`cdip ARGS` on a real pseudo-terminal in `cwd`, the screen logged to a file."""
    logfile = (log or cwd / "session.log").open("a")
    return pexpect.spawn(CDIP, list(args), encoding="utf-8", timeout=30, logfile=logfile,
                         cwd=str(cwd), dimensions=(40, 200),
                         env={**os.environ, **(env or {})})


def environment_without(tmp_path: Path, *missing: str) -> Path:
    """The python of a new virtual environment that has our packages but not `missing`.

    The packages are really there on disk: a `.pth` line marks them as not importable,
    as if they had never been installed in that environment.
    """
    where = tmp_path / ("env-without-" + "-".join(missing))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True,
                   timeout=120)
    (site,) = (where / "lib").glob("python*/site-packages")
    ours = [p for p in sys.path if p.endswith("site-packages") or "__editable__" in p]
    block = f"import sys; sys.modules.update(dict.fromkeys({list(missing)!r}))"
    (site / "ours.pth").write_text("\n".join([*ours, block]) + "\n")
    return where / "bin" / "python"


# -- 1. bind by name -----------------------------------------------------------------


@pytest.fixture
def signature(tmp_path: Path) -> Path:
    """compute(1, 0, scale=2.0), saved at the call."""
    script = sample(tmp_path, "signature.py")
    run_python(str(script), check=True)
    return script


def _redefine(script: Path, new_def: str, body: str = "") -> None:
    text = script.read_text().replace("def compute(a, b, scale=1.0):", new_def)
    if body:
        text = text.replace("    return (a + b) * scale", body)
    script.write_text(text)


def test_a_new_parameter_does_not_take_a_saved_keyword_value(signature):
    _redefine(signature, "def compute(a, b, offset=0.0, scale=1.0):",
              "    return (a + b + offset) * scale")
    result = cdip("run", "compute", "--mode", "run")
    assert result.returncode == 0, result.stderr
    assert "compute returned 2.0" in result.stdout  # not (1 + 0 + 2.0) * 1.0
    assert "the parameters of compute changed since capture" in result.stderr
    assert "added offset: its default 0.0 is used" in result.stderr


def test_parameters_bind_by_name_when_their_order_changes(signature):
    _redefine(signature, "def compute(scale, b, a):", "    return (a + b) * scale - a")
    result = cdip("run", "compute", "--mode", "run")
    assert result.returncode == 0, result.stderr
    assert "compute returned 1.0" in result.stdout  # (1 + 0) * 2.0 - 1
    assert "the parameters of compute" not in result.stderr  # the same names: no news


def test_a_renamed_parameter_is_named_in_the_banner(signature):
    _redefine(signature, "def compute(first, b, scale=1.0):", "    return (first + b) * scale")
    result = cdip("run", "compute", "--mode", "run")
    assert result.returncode == 0, result.stderr
    assert "compute returned 2.0" in result.stdout
    assert "renamed a to first? the value saved for a is passed as first" in result.stderr


def test_a_removed_parameter_is_named_in_the_banner(signature):
    _redefine(signature, "def compute(a, b):", "    return a + b")
    result = cdip("run", "compute", "--mode", "run")
    assert result.returncode == 0, result.stderr
    assert "compute returned 1" in result.stdout
    assert "removed scale: its saved value 2.0 is not passed" in result.stderr


def test_a_required_parameter_without_a_saved_value_is_refused_but_the_shell_opens(signature):
    _redefine(signature, "def compute(a, b, offset, scale=1.0):",
              "    return (a + b + offset) * scale")
    (signature.parent / "ran").unlink(missing_ok=True)
    refused = cdip("run", "compute", "--mode", "run")
    assert refused.returncode == 2, refused.stderr
    assert "compute cannot be called with the saved arguments: its parameter 'offset' " \
        "has no saved value and no default" in refused.stderr
    assert "--mode shell" in refused.stderr
    assert "Traceback" not in refused.stderr
    shell = cdip("run", "compute", "--mode", "shell", "-c", "print(a, b, scale)",
                 "-c", "offset = 10", "-c", "print('got', call())")
    assert shell.returncode == 0, shell.stderr
    assert "1 0 2.0" in shell.stdout
    assert "got 22.0" in shell.stdout


def test_load_call_binds_by_name_too(tmp_path, monkeypatch):
    script = sample(tmp_path, "signature.py")
    run_python("-c", "import signature; signature.compute(1, 0, scale=2.0)", cwd=tmp_path,
               check=True)
    _redefine(script, "def compute(a, b, offset=0.0, scale=1.0):",
              "    return (a + b + offset) * scale")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        checkpoint = ckpt.load("compute")
        assert checkpoint.args == (1, 0, 2.0)  # the call as captured, by position
        assert checkpoint.call() == 2.0
    finally:
        sys.modules.pop("signature", None)


# -- 3. every definition site replays ------------------------------------------------


def _interactive_lines() -> list[str]:
    text = (FAITHFUL / "interactive.py").read_text()
    return [line for line in text.split('"""', 2)[2].splitlines()]


def _assert_replays_from_the_saved_copy(result: subprocess.CompletedProcess[str],
                                        where: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "ZeroDivisionError: division by zero" in result.stderr
    assert f"typed was defined {where}: replaying the copy saved at capture " \
           "(edits are not picked up)" in result.stderr
    assert "no longer exists" not in result.stderr


def test_a_function_typed_into_the_repl_replays(tmp_path):
    repl = pexpect.spawn(sys.executable, ["-q"], encoding="utf-8", timeout=30, cwd=str(tmp_path),
                         logfile=(tmp_path / "repl.log").open("a"))
    for line in _interactive_lines():
        repl.expect([">>> ", r"\.\.\. "])
        repl.sendline(line)
    repl.expect("ZeroDivisionError")
    repl.sendline("")
    repl.sendline("exit()")
    repl.expect(pexpect.EOF)
    result = cdip("run", "typed", "--mode", "run")
    _assert_replays_from_the_saved_copy(result, "in a REPL")


def test_a_function_from_python_dash_c_replays(tmp_path):
    run_python("-c", (FAITHFUL / "interactive.py").read_text(), cwd=tmp_path)
    result = cdip("run", "typed", "--mode", "run")
    _assert_replays_from_the_saved_copy(result, "by `python -c`")


def test_a_function_from_ipython_replays(tmp_path):
    pytest.importorskip("IPython")
    run_python("-m", "IPython", "--quick", "--no-banner", "-c",
               (FAITHFUL / "interactive.py").read_text(), cwd=tmp_path)
    result = cdip("run", "typed", "--mode", "run")
    _assert_replays_from_the_saved_copy(result, "in IPython")


def test_a_function_from_a_jupyter_notebook_replays(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(str(FAITHFUL / "notebook.ipynb"), as_version=4)
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert "failed as expected" in notebook.cells[2].outputs[0]["text"]
    result = cdip("run", "cell_step", "--mode", "run")
    assert result.returncode == 1, result.stderr
    assert "ZeroDivisionError: division by zero" in result.stderr
    assert "cell_step was defined in a notebook cell: replaying the copy saved at capture " \
           "(edits are not picked up)" in result.stderr
    shell = cdip("run", "cell_step", "--mode", "shell", "-c", "print(values)",
                 "-c", "values = [2, 4]", "-c", "print(call())")
    assert shell.returncode == 0, shell.stderr
    assert "[]\n" in shell.stdout
    assert "3.0" in shell.stdout


# -- 4. the right directory, always stated ---------------------------------------------


def _clone(tmp_path: Path, name: str) -> Path:
    """A git checkout of the clone/ sample project."""
    folder = tmp_path / name
    shutil.copytree(FAITHFUL / "clone", folder)
    subprocess.run(["git", "init", "-q", str(folder)], check=True, timeout=60)
    return folder


def _fix(clone: Path) -> None:
    calc = clone / "calc.py"
    calc.write_text(calc.read_text().replace("return a / b", "return a / b if b else 0.0"))


def test_the_checkout_cdip_runs_in_supplies_the_code(tmp_path):
    first, second = _clone(tmp_path, "first"), _clone(tmp_path, "second")
    assert run_python("main.py", cwd=first).returncode == 1
    _fix(second)
    fixed = cdip("run", "ratio", "--mode", "run", cwd=second)
    assert fixed.returncode == 0, fixed.stderr
    assert "ratio returned 0.0" in fixed.stdout
    assert f"code: {second / 'calc.py'} in {second} (the checkout you are in; " \
           f"captured in {first})" in fixed.stderr
    # from the first clone, and from outside any checkout: the recorded directory
    there = cdip("run", "ratio", "--mode", "run", cwd=first)
    assert there.returncode == 1, there.stderr
    assert f"code: {first / 'calc.py'} in {first} (recorded at capture)" in there.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = cdip("run", "ratio", "--mode", "run", cwd=elsewhere)
    assert outside.returncode == 1, outside.stderr
    assert f"code: {first / 'calc.py'} in {first} (recorded at capture)" in outside.stderr


def test_a_git_worktree_is_a_checkout_too(tmp_path):
    first = _clone(tmp_path, "first")
    git = ["git", "-C", str(first), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "."], check=True, timeout=60)
    subprocess.run([*git, "commit", "-qm", "x"], check=True, timeout=60)
    work = tmp_path / "work"
    subprocess.run([*git, "worktree", "add", "-q", str(work)], check=True, timeout=60)
    assert (work / ".git").is_file()
    assert run_python("main.py", cwd=first).returncode == 1
    _fix(work)
    result = cdip("run", "ratio", "--mode", "run", cwd=work)
    assert result.returncode == 0, result.stderr
    assert f"(the checkout you are in; captured in {first})" in result.stderr


def test_cwd_overrides_the_directory(tmp_path):
    first, second = _clone(tmp_path, "first"), _clone(tmp_path, "second")
    assert run_python("main.py", cwd=first).returncode == 1
    _fix(second)
    result = cdip("run", "ratio", "--mode", "run", "--cwd", str(first), cwd=second)
    assert result.returncode == 1, result.stderr
    assert f"code: {first / 'calc.py'} in {first} (--cwd)" in result.stderr
    fixed = cdip("run", "ratio", "--mode", "run", "--cwd", str(second), cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert f"code: {second / 'calc.py'} in {second} (--cwd)" in fixed.stderr
    missing = cdip("run", "ratio", "--mode", "run", "--cwd", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert "--cwd" in missing.stderr and "not a directory" in missing.stderr


def _environment_with(tmp_path: Path, name: str, version: str) -> Path:
    """A virtual environment with our packages and its own `units` package."""
    where = tmp_path / name
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True,
                   timeout=120)
    (site,) = (where / "lib").glob("python*/site-packages")
    ours = [p for p in sys.path if p.endswith("site-packages") or "__editable__" in p]
    (site / "ours.pth").write_text("\n".join(ours) + "\n")
    (site / "units.py").write_text(f"VERSION = {version!r}\n")
    return where / "bin" / "python"


def test_python_replays_with_its_own_packages(tmp_path):
    recorded = _environment_with(tmp_path, "recorded-env", "recorded")
    other = _environment_with(tmp_path, "other-env", "other")
    (tmp_path / "which.py").write_text(
        "import ckpt, units\n\n@ckpt.ckpt\ndef which():\n    return units.VERSION\n")
    subprocess.run([str(recorded), "-c", "import which; which.which()"], cwd=tmp_path,
                   check=True, timeout=60)
    same = cdip("run", "which", "--mode", "run", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert "which returned 'recorded'" in same.stdout
    result = cdip("run", "which", "--mode", "run", "--python", str(other), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "which returned 'other'" in result.stdout
    assert "not the one recorded" in result.stderr


# -- 6. land where the user's code is --------------------------------------------------


@pytest.fixture
def library_error(tmp_path: Path) -> Path:
    script = sample(tmp_path, "library_error.py")
    assert run_python(str(script), cwd=tmp_path).returncode == 1
    return script


def test_post_mortem_opens_in_the_users_innermost_frame(library_error, tmp_path):
    child = spawn(tmp_path, "run", "load_config")
    child.expect("JSONDecodeError")
    child.expect(r"post-mortem at parse \(.*library_error\.py:17\), the innermost frame "
                 r"of your code; `down` reaches the 3 frames below it")
    child.expect(r"\(Pdb\) ")
    child.sendline("p cleaned")
    child.expect(r"'\{\"retries\": 5,'")
    child.expect(r"\(Pdb\) ")
    child.sendline("up")
    child.expect(r"\(Pdb\) ")
    child.sendline("p defaults")
    child.expect(r"\{'retries': 3\}")
    child.expect(r"\(Pdb\) ")
    for _ in range(4):
        child.sendline("down")
        child.expect(r"\(Pdb\) ")
    child.sendline("where")
    child.expect(r"json/decoder\.py\(\d+\)raw_decode")
    child.expect(r"\(Pdb\) ")
    child.sendline("down")
    child.expect("Newest frame")
    child.sendline("q")
    assert finish(child) == 1


def test_post_mortem_transcript_starts_in_the_users_frame(library_error):
    result = cdip("run", "load_config", "--mode", "until-error", "-c", "p cleaned", "-c", "q")
    assert result.returncode == 1
    assert "'{\"retries\": 5,'" in result.stdout


def test_locals_defaults_to_the_users_innermost_frame(library_error, tmp_path):
    result = cdip("run", "load_config", "--mode", "locals", "-c", "print(repr(cleaned))")
    assert result.returncode == 0, result.stderr
    assert "the locals of parse at line 17: text, cleaned" in result.stdout
    assert "'{\"retries\": 5,'" in result.stdout
    first = cdip("run", "load_config", "--mode", "locals", "--frame", "0", "-c", "print(defaults)")
    assert "the locals of load_config at line 11" in first.stdout
    assert "{'retries': 3}" in first.stdout


def test_library_frames_are_told_apart():
    from _ckpt_runner.frames import is_library

    assert is_library(json.__file__)
    assert is_library(pytest.__file__)  # site-packages
    assert is_library("<frozen runpy>")
    assert not is_library(str(FAITHFUL / "library_error.py"))


# -- 7. generators ---------------------------------------------------------------------


@pytest.fixture
def generators(tmp_path: Path) -> Path:
    script = sample(tmp_path, "generators.py")
    run_python(str(script), check=True)
    return script


@pytest.mark.parametrize("name", ["ratios", "aratios"])
def test_a_generator_is_iterated_to_the_end(generators, name):
    result = cdip("run", name, "--mode", "run")
    assert result.returncode == 1, result.stdout
    assert "ZeroDivisionError: division by zero" in result.stderr
    assert f"{name} raised ZeroDivisionError" in result.stdout
    assert "generator object" not in result.stdout


def test_a_generator_that_finishes_reports_what_it_yielded(generators):
    result = cdip("run", "squares", "--mode", "run")
    assert result.returncode == 0, result.stderr
    assert "squares yielded 4 values: [0, 1, 4, 9]" in result.stdout


def test_a_generator_fails_into_post_mortem_at_its_frame(generators, tmp_path):
    result = cdip("run", "ratios", "--mode", "until-error", "-c", "p i, n", "-c", "q")
    assert result.returncode == 1
    assert "(2, 3)" in result.stdout


# -- 8. debuggers and interrupts -------------------------------------------------------


@pytest.fixture
def side_effects(tmp_path: Path) -> Path:
    script = sample(tmp_path, "side_effects.py")
    assert run_python(str(script), cwd=tmp_path).returncode == 1
    for mark in tmp_path.glob("*.mark"):
        mark.unlink()
    return script


@pytest.mark.parametrize(("option", "package"), [
    (["--debugger", "pudb"], "pudb"), (["--debugger", "ipdb"], "IPython"),
    (["--debugger", "pdbpp"], "pdbpp"), (["--mode", "shell", "--shell", "ipython"], "IPython"),
], ids=["pudb", "ipdb", "pdbpp", "ipython"])
def test_a_missing_debugger_or_shell_is_refused_before_any_user_code(side_effects, tmp_path,
                                                                    option, package):
    python = environment_without(tmp_path, package)
    args = ["run", "fragile", "--python", str(python), *option, "-c", "q"]
    result = cdip(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"is not installed in {python}" in result.stderr
    assert "pip install" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.mark")), "user code ran"


def test_pudb_takes_no_commands_and_says_so_before_any_user_code(side_effects, tmp_path):
    pytest.importorskip("pudb")
    result = cdip("run", "fragile", "--debugger", "pudb", "-c", "q", cwd=tmp_path)
    assert result.returncode == 2
    assert "pudb is a full-screen debugger and takes no -c commands" in result.stderr
    assert not list(tmp_path.glob("*.mark"))


def test_ipdb_post_mortem(library_error, tmp_path):
    pytest.importorskip("IPython")
    child = spawn(tmp_path, "run", "load_config", "--debugger", "ipdb")
    child.expect("post-mortem at parse")
    child.expect("ipdb> ")
    child.sendline("p len(cleaned)")
    child.expect("14")
    child.expect("ipdb> ")
    child.sendline("q")
    assert finish(child) == 1


def test_pdbpp_post_mortem(library_error, tmp_path):
    pytest.importorskip("pdbpp")
    child = spawn(tmp_path, "run", "load_config", "--debugger", "pdbpp")
    child.expect("post-mortem at parse")
    child.expect(r"\(Pdb\+\+\) ")
    child.sendline("p len(cleaned)")
    child.expect("14")
    child.expect(r"\(Pdb\+\+\) ")
    child.sendline("q")
    assert finish(child) == 1


def test_pudb_post_mortem(library_error, tmp_path):
    pytest.importorskip("pudb")
    settings = Path(os.environ["XDG_CONFIG_HOME"]) / "pudb" / "pudb.cfg"
    settings.parent.mkdir(parents=True)
    settings.write_text("[pudb]\nseen_welcome = e999\n")  # no first-run dialog
    child = spawn(tmp_path, "run", "load_config", "--debugger", "pudb",
                  env={"TERM": "xterm"})
    child.expect("post-mortem at parse")
    child.expect("PuDB")
    colour = r"(?:\x1b\[[0-9;]*m|\s)*"  # what the screen has between two words
    child.expect(f"cleaned{colour}:")  # the variables pane shows the user's frame
    child.expect(f">>{colour}parse")  # and the stack pane marks it
    child.send("q")
    time.sleep(0.3)
    child.send("\r")  # the quit dialog's default answer
    assert finish(child) == 1


@pytest.fixture
def spin(tmp_path: Path) -> Path:
    """Steps saved with 0 seconds to spin, then edited to spin for a minute."""
    script = sample(tmp_path, "spin.py")
    run_python("spin.py", cwd=tmp_path, check=True)
    script.write_text(script.read_text().replace("deadline = time.monotonic() + seconds",
                                                 "deadline = time.monotonic() + 60"))
    return script


def test_ctrl_c_in_run_prints_where_the_function_was(spin, tmp_path):
    child = spawn(tmp_path, "run", "spin", "--mode", "run")
    child.expect("spinning")
    time.sleep(0.3)
    child.sendintr()
    child.expect(r'File ".*spin\.py", line \d+, in spin')
    child.expect("KeyboardInterrupt")
    child.expect(r"spin was interrupted \(Ctrl-C\)")
    assert finish(child) == 130
    log = (tmp_path / "session.log").read_text()
    assert "_ckpt_runner" not in log and "runner/modes.py" not in log


@pytest.mark.parametrize("name", ["spin", "aspin"])
def test_ctrl_c_in_until_error_opens_a_post_mortem_where_it_was(spin, tmp_path, name):
    child = spawn(tmp_path, "run", name, "--mode", "until-error")
    child.expect("spinning")
    time.sleep(0.3)
    child.sendintr()
    child.expect(rf"{name} was interrupted \(Ctrl-C\): entering post-mortem debugging")
    child.expect(rf"post-mortem at {name} \(.*spin\.py:\d+\)")
    child.expect(r"\(Pdb\) ")
    child.sendline("p turns > 0")
    child.expect("True")
    child.expect(r"\(Pdb\) ")
    child.sendline("q")
    assert finish(child) == 130
    assert "_ckpt_runner" not in (tmp_path / "session.log").read_text()


def test_ctrl_c_while_the_replay_starts_is_no_traceback_of_ours(tmp_path):
    sample(tmp_path, "slow_import.py")
    # imported as a module: a script's top level would be skipped, slow part and all
    run_python("-c", "import slow_import; slow_import.quick(1)", cwd=tmp_path, check=True)
    child = spawn(tmp_path, "run", "quick", "--mode", "run", env={"SLOW_IMPORT": "60"})
    child.expect("importing")
    time.sleep(0.3)
    child.sendintr()
    child.expect("cdip: interrupted before the replayed function started")
    assert finish(child) == 130
    assert "Traceback" not in (tmp_path / "session.log").read_text()


def test_break_stops_in_the_body_of_a_generator(generators):
    result = cdip("run", "ratios", "--mode", "break", "-c", "p n", "-c", "next", "-c", "p i",
                  "-c", "q")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-2:] == ["3", "0"]
