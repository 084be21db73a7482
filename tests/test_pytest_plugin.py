"""`pytest --ckpt` as users expect: a summary, fresh builtin fixtures, doctests, unittest.

Each test runs pytest in a subprocess on a copy of tests/samples/pytest_project
(tests that use capsys, tmp_path, monkeypatch..., a unittest TestCase with
subTest, doctests in a module and in a text file), then `cdip` on what it saved.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES
from test_ci import CDIP, home_env, pytest_run, run

PROJECT = SAMPLES / "pytest_project"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(PROJECT, copy)
    return copy


@pytest.fixture
def env(tmp_path: Path, project: Path) -> dict[str, str]:
    return home_env(tmp_path, "dev", project / ".ckpt")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def replay(env: dict[str, str], cwd: Path, name: str, *args: str):
    return run([CDIP, "run", name, "--mode", "run", *args], env, cwd)


# -- the summary ----------------------------------------------------------------------


def test_the_summary_says_how_many_were_saved_where_and_the_command_for_each(project, env):
    result = pytest_run(project, env, "--ckpt", "tests/test_unit.py", "greeting.py")
    assert result.returncode == 1
    section = result.stdout[result.stdout.index("= ckpt ="):]
    assert f"4 failing test(s) saved as checkpoints in {project / '.ckpt'}" in section
    commands = re.findall(r"^  (cdip run .*)$", section, re.MULTILINE)
    assert commands == ["cdip run tests/test_unit.py::TestShout::test_each",
                        "cdip run tests/test_unit.py::TestShout::test_shout",
                        "cdip run greeting.py::greeting.greet",
                        "cdip run greeting.py::greeting.shout"]
    for command in commands:  # each replays what failed
        replayed = run([CDIP, *shlex.split(command)[1:], "--mode", "run"], env, project)
        assert replayed.returncode == 1, replayed.stderr


def test_the_summary_quotes_parametrized_node_ids(tmp_path):
    checkout = tmp_path / "ci"
    shutil.copytree(SAMPLES / "ci_project", checkout)
    env = home_env(tmp_path, "ci", checkout / "store")
    result = pytest_run(checkout, env, "--ckpt", "-k", "test_spread")
    assert "  cdip run 'tests/test_stats.py::test_spread[values0-1]'" in result.stdout
    replayed = run([CDIP, "run", "tests/test_stats.py::test_spread[values0-1]", "--mode", "run"],
                   env, checkout)
    assert replayed.returncode == 1, replayed.stderr


def test_no_summary_when_nothing_was_saved(project, env):
    passing = pytest_run(project, env, "--ckpt", "-k", "test_passes")
    assert passing.returncode == 0, passing.stdout
    assert "= ckpt =" not in passing.stdout
    off = pytest_run(project, env, "tests/test_unit.py")
    assert off.returncode == 1
    assert "= ckpt =" not in off.stdout


def test_node_ids_are_listed_whole(project, env):
    pytest_run(project, env, "--ckpt", "tests/test_fixtures.py")
    listed = run([CDIP, "info"], env, project).stdout
    assert "tests/test_fixtures.py::test_save_in_a_factory_directory " in listed


# -- builtin fixtures -----------------------------------------------------------------

# (test, what fixes it: file, old, new)
FIXES = {
    "test_greet_prints": ("greeting.py", 'f"Hello {name}!"', 'f"Hello, {name}!"'),
    "test_greet_prints_to_the_fd": ("greeting.py", 'f"Hello {name}!"', 'f"Hello, {name}!"'),
    "test_welcome_logs": ("greeting.py", 'log.info("done")', 'log.warning("done")'),
    "test_save_writes_a_file": ("tests/test_fixtures.py", '"Hello Di!\\n"', '"Hello, Di!\\n"'),
    "test_save_in_a_factory_directory": ("tests/test_fixtures.py", '"Hello Ed!\\n"',
                                         '"Hello, Ed!\\n"'),
    "test_home_greeting": ("tests/test_fixtures.py", '"Hello Flo!"', '"Hello, Flo!"'),
    "test_deprecated_greet_warns": ("greeting.py", "UserWarning", "DeprecationWarning"),
    "test_knows_its_name": ("tests/test_fixtures.py", "test_knows_its_names",
                            "test_knows_its_name"),
}


@pytest.mark.parametrize("test", list(FIXES))
def test_builtin_fixtures_are_made_fresh_and_the_fixed_test_passes(project, env, test):
    pytest_run(project, env, "--ckpt", "-k", test)
    shown = json.loads(run([CDIP, "info", test, "--json"], env, project).stdout)
    assert not [a for a in shown["arguments"] if a.get("unpicklable")]  # no placeholders
    failing = replay(env, project, test)
    assert failing.returncode == 1, failing.stderr
    assert "AssertionError" in failing.stderr
    assert "Unpicklable" not in failing.stderr + failing.stdout
    assert "note: pytest fixtures made fresh for this replay" in failing.stderr
    path, old, new = FIXES[test]
    edit(project / path, old, new)
    for _ in range(2):  # twice: a second replay gets fresh ones again (an empty tmp_path)
        fixed = replay(env, project, test)
        assert fixed.returncode == 0, fixed.stderr
        assert "returned None" in fixed.stdout  # what capsys captured, the replay still shows


def test_a_projects_own_fixture_of_a_builtin_name_is_not_replaced(project, env):
    (project / "tests" / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef tmp_path():\n    return 'mine'\n")
    (project / "tests" / "test_own.py").write_text(
        "def test_own(tmp_path):\n    assert tmp_path == 'theirs'\n")
    pytest_run(project, env, "--ckpt", "tests/test_own.py")
    shown = json.loads(run([CDIP, "info", "test_own", "--json"], env, project).stdout)
    assert shown["arguments"][0]["repr"] == "'mine'"


def test_capsys_output_is_shown_and_captured_in_a_post_mortem(project, env):
    pytest_run(project, env, "--ckpt", "-k", "test_greet_prints")
    result = run([CDIP, "run", "tests/test_fixtures.py::test_greet_prints", "--mode",
                  "until-error", "-c", "p 6 * 7", "-c", "q"], env, project)
    assert result.returncode == 1, result.stderr
    assert "42" in result.stdout  # the debugger is heard while capsys captures
    assert "Hello Ada!" in result.stdout


# -- unittest -------------------------------------------------------------------------


def test_unittest_failures_are_saved_once_per_test_and_replay(project, env):
    result = pytest_run(project, env, "--ckpt", "tests/test_unit.py")
    assert "SUBFAILED" in result.stdout
    listed = json.loads(run([CDIP, "info", "--json"], env, project).stdout)
    assert sorted(row["name"] for row in listed) == [
        "tests/test_unit.py::TestShout::test_each", "tests/test_unit.py::TestShout::test_shout"]
    each = replay(env, project, "TestShout::test_each")
    assert each.returncode == 1, each.stderr
    assert "'HELLO, ANN!' != 'HELLO ANN!'" in each.stderr  # the first subtest, self intact
    post_mortem = run([CDIP, "run", "test_each", "--mode", "until-error", "-c", "p name",
                       "-c", "p self.names", "-c", "q"], env, project)
    assert "'ann'" in post_mortem.stdout
    assert "['ann', 'bo']" in post_mortem.stdout
    edit(project / "greeting.py", 'f"HELLO, {name.upper()}!"', 'f"HELLO {name.upper()}!"')
    for name in ("TestShout.test_each", "test_shout"):
        fixed = replay(env, project, name)
        assert fixed.returncode == 0, fixed.stderr


# -- doctests -------------------------------------------------------------------------


def test_a_doctest_with_wrong_output_is_saved_and_replays_from_todays_source(project, env):
    pytest_run(project, env, "--ckpt", "greeting.py", "-k", "greet")
    shown = run([CDIP, "info", "greeting.greet"], env, project)
    assert "exception: AssertionError: doctest greeting.greet failed at" in shown.stdout
    failing = replay(env, project, "greeting.greet")
    assert failing.returncode == 1, failing.stderr
    assert "Expected:\n    Hello, Ada!\nGot:\n    Hello Ada!" in failing.stderr
    edit(project / "greeting.py", 'f"Hello {name}!"', 'f"Hello, {name}!"')
    fixed = replay(env, project, "greeting.greet")
    assert fixed.returncode == 0, fixed.stderr


def test_a_doctest_that_raises_opens_its_post_mortem_in_the_users_code(project, env):
    pytest_run(project, env, "--ckpt", "greeting.py", "-k", "shout")
    checkpoint = json.loads(run([CDIP, "info", "greeting.shout", "--json"], env, project).stdout)
    assert checkpoint["exception"]["type"] == "AttributeError"
    assert [frame["function"] for frame in checkpoint["frames"]] == ["<module>", "shout"]
    assert not [local for local in checkpoint["frames"][0]["locals"]
                if local["name"].startswith("__")]
    result = run([CDIP, "run", "greeting.shout", "--mode", "until-error", "-c", "p name",
                  "-c", "q"], env, project)
    assert result.returncode == 1, result.stderr
    assert "None" in result.stdout
    assert "greeting.py" in result.stderr
    edit(project / "greeting.py", "{name.upper()}!", "{name.upper()}!\" if name else \"HELLO!")
    fixed = replay(env, project, "greeting.shout")
    assert fixed.returncode == 0, fixed.stderr


def test_a_text_file_doctest_is_saved_and_replays(project, env):
    pytest_run(project, env, "--ckpt", "docs/usage.txt")
    failing = replay(env, project, "usage.txt")
    assert failing.returncode == 1, failing.stderr
    assert "'HELLO BOB!'" in failing.stderr
    edit(project / "docs" / "usage.txt", "'HELLO BOB!'", "'HELLO, BOB!'")
    fixed = replay(env, project, "docs/usage.txt::usage.txt")
    assert fixed.returncode == 0, fixed.stderr


def test_info_shows_a_builtin_fixture_as_its_type_made_fresh(project, env):
    pytest_run(project, env, "--ckpt", "-k", "test_greet_prints_to_the_fd")
    shown = run([CDIP, "info", "test_greet_prints_to_the_fd"], env, project).stdout
    assert re.search(r"capfd +_pytest\.capture\.CaptureFixture +<pytest fixture capfd: "
                     r"made fresh on replay>", shown), shown


def test_capsys_keeps_only_what_the_test_wrote_in_break_and_shell(project, env):
    pytest_run(project, env, "--ckpt", "-k", "test_greet_prints")
    name = "tests/test_fixtures.py::test_greet_prints"
    stepped = run([CDIP, "run", name, "--mode", "break", "-c", "next", "-c",
                   "p capsys.readouterr()", "-c", "q"], env, project)
    assert "CaptureResult(out='Hello Ada!\\n', err='')" in stepped.stdout, stepped.stdout
    edit(project / "greeting.py", 'f"Hello {name}!"', 'f"Hello, {name}!"')
    shell = run([CDIP, "run", name, "--mode", "shell", "-c", "print('chatter')", "-c",
                 "call()"], env, project)
    assert shell.returncode == 0, shell.stderr
    assert "Error" not in shell.stdout + shell.stderr  # the test passed in the shell
    assert "Hello, Ada!" in shell.stdout
