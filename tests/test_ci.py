"""Reproducing a CI failure: the pytest plugin, export/import bundles, and replay elsewhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pexpect
import pytest
from conftest import BIN, SAMPLES

CDIP = str(BIN / "cdip")
FAILING = [
    "tests/test_stats.py::test_spread[values0-1]",
    "tests/test_stats.py::test_spread[values1-0]",
    "tests/test_stats.py::TestSpread::test_of_samples",
    "tests/test_stats.py::test_with_a_lock",
]


def home_env(tmp_path: Path, who: str, store: Path | None = None) -> dict[str, str]:
    """The environment of one user: their own HOME, key and (optionally) store."""
    home = tmp_path / who
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_STATE_HOME": str(home / ".local" / "state")}
    env.pop("PYCKPT_DIR", None)
    if store is not None:
        env["PYCKPT_DIR"] = str(store)
    return env


def run(command: list[str], env: dict[str, str], cwd: Path,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, input=stdin, stdin=None if stdin is not None
                          else subprocess.DEVNULL)


def pytest_run(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], env,
               project)


def names(env: dict[str, str], cwd: Path) -> list[str]:
    listed = run([CDIP, "info", "--json"], env, cwd)
    assert listed.returncode == 0, listed.stderr
    return [row["name"] for row in json.loads(listed.stdout)]


@pytest.fixture
def ci_checkout(tmp_path: Path) -> Path:
    """The project as a CI runner checks it out."""
    checkout = tmp_path / "runner" / "work" / "project"
    shutil.copytree(SAMPLES / "ci_project", checkout)
    return checkout


def test_failing_tests_become_checkpoints_and_passing_ones_do_not(ci_checkout, tmp_path):
    env = home_env(tmp_path, "ci", ci_checkout / "artifacts")
    result = pytest_run(ci_checkout, env, "--ckpt")
    assert result.returncode == 1
    assert "4 failed, 1 passed" in result.stdout
    assert sorted(names(env, ci_checkout)) == sorted(FAILING)
    detail = json.loads(run([CDIP, "info", "test_of_samples", "--json"], env, ci_checkout).stdout)
    assert [a["name"] for a in detail["arguments"]] == ["self", "samples"]
    assert detail["exception"]["type"] == "AssertionError"
    assert not [local for local in detail["frames"][0]["locals"]
                if local["name"].startswith("@py")]


def test_the_plugin_is_off_by_default_and_on_by_environment(ci_checkout, tmp_path):
    env = home_env(tmp_path, "ci", ci_checkout / "artifacts")
    assert pytest_run(ci_checkout, env).returncode == 1
    assert names(env, ci_checkout) == []
    assert pytest_run(ci_checkout, {**env, "PYCKPT_PYTEST": "1"}).returncode == 1
    assert len(names(env, ci_checkout)) == 4


def test_replay_a_failing_test_until_it_is_fixed(ci_checkout, tmp_path):
    env = home_env(tmp_path, "dev", ci_checkout / "artifacts")
    pytest_run(ci_checkout, env, "--ckpt")
    for name in ("test_spread[values0-1]", FAILING[0], "test_of_samples"):
        failing = run([CDIP, "run", name, "--mode", "run"], env, ci_checkout)
        assert failing.returncode == 1, failing.stderr
        assert "AssertionError" in failing.stderr
    locked = run([CDIP, "run", "test_with_a_lock", "--mode", "run"], env, ci_checkout)
    assert "argument 'lock' could not be saved (TypeError: cannot pickle '_thread.lock'" \
        in locked.stderr
    post_mortem = run([CDIP, "run", "test_of_samples", "--mode", "until-error", "-c", "p samples",
                       "-c", "q"], env, ci_checkout)
    assert post_mortem.returncode == 1
    assert "[3.0, 5.0, 10.0]" in post_mortem.stdout
    stats = ci_checkout / "stats.py"
    stats.write_text(stats.read_text().replace(" + 1  # bug: off by one", ""))
    fixed = run([CDIP, "run", "test_of_samples", "--mode", "run", "--json"], env, ci_checkout)
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["outcome"] == "returned"


def _export_from_ci(ci_checkout: Path, tmp_path: Path) -> Path:
    env = home_env(tmp_path, "ci", ci_checkout / "artifacts")
    pytest_run(ci_checkout, env, "--ckpt")
    bundle = tmp_path / "failures.ckpt"
    exported = run([CDIP, "export", "-o", str(bundle)], env, ci_checkout)
    assert exported.returncode == 0, exported.stderr
    assert "exported 4 checkpoint(s)" in exported.stdout
    return bundle


def test_export_on_ci_import_on_a_laptop_replay_and_fix(ci_checkout, tmp_path):
    bundle = _export_from_ci(ci_checkout, tmp_path)
    laptop = tmp_path / "laptop" / "project"
    shutil.copytree(SAMPLES / "ci_project", laptop)
    shutil.rmtree(ci_checkout)  # the CI runner is gone
    env = home_env(tmp_path, "laptop")
    assert run([CDIP, "init"], env, laptop).returncode == 0
    refused = run([CDIP, "import", str(bundle)], env, laptop)  # no terminal to confirm
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert names(env, laptop) == []
    asked = pexpect.spawn(CDIP, ["import", str(bundle)], env=env, cwd=str(laptop),
                          encoding="utf-8", timeout=30)
    asked.expect(r"import them into .*\? \[y/N\] ")
    asked.sendline("n")
    asked.expect("nothing imported")
    asked.expect(pexpect.EOF)
    asked.close()
    assert asked.exitstatus == 2
    assert names(env, laptop) == []
    imported = run([CDIP, "import", str(bundle), "--yes"], env, laptop)
    assert imported.returncode == 0, imported.stderr
    assert "4 checkpoint(s) exported from" in imported.stdout
    assert "tests/test_stats.py::TestSpread::test_of_samples" in imported.stdout
    assert sorted(names(env, laptop)) == sorted(FAILING)
    shown = run([CDIP, "info", "test_of_samples"], env, laptop)
    assert shown.returncode == 0, shown.stderr
    assert "source:    unchanged since capture" in shown.stdout
    failing = run([CDIP, "run", "test_of_samples", "--mode", "run"], env, laptop)
    assert failing.returncode == 1, failing.stderr
    assert "does not exist here; paths under it are taken from" in failing.stderr
    assert str(laptop / "tests" / "test_stats.py") in failing.stderr
    test_file = laptop / "tests" / "test_stats.py"
    test_file.write_text(test_file.read_text().replace("== 7.0\n\n\ndef", "== 8.0\n\n\ndef"))
    changed = run([CDIP, "info", "test_of_samples"], env, laptop)
    assert "source:    changed since capture" in changed.stdout
    assert "+        assert stats.spread(samples) == 8.0" in changed.stdout
    fixed = run([CDIP, "run", "test_of_samples", "--mode", "run"], env, laptop)
    assert fixed.returncode == 0, fixed.stderr


def test_importing_twice_gives_fresh_ids(ci_checkout, tmp_path):
    bundle = _export_from_ci(ci_checkout, tmp_path)
    env = home_env(tmp_path, "laptop", tmp_path / "laptop-store")
    first = run([CDIP, "import", str(bundle), "--yes"], env, tmp_path)
    second = run([CDIP, "import", str(bundle), "--yes"], env, tmp_path)
    assert first.returncode == second.returncode == 0
    assert second.stdout.count("an id already here") == 4
    listed = json.loads(run([CDIP, "info", "--json"], env, tmp_path).stdout)
    assert len({row["id"] for row in listed}) == 8


@pytest.mark.parametrize("damage", ["flipped", "truncated", "not-a-bundle"])
def test_a_damaged_bundle_is_refused_and_nothing_is_adopted(ci_checkout, tmp_path, damage):
    bundle = _export_from_ci(ci_checkout, tmp_path)
    data = bytearray(bundle.read_bytes())
    if damage == "flipped":
        with tarfile.open(bundle) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(".call"))
            offset = member.offset_data + member.size // 2
        data[offset] ^= 0x01
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"just some text, not a bundle\n" * 100)
    bundle.write_bytes(bytes(data))
    env = home_env(tmp_path, "laptop", tmp_path / "laptop-store")
    result = run([CDIP, "import", str(bundle), "--yes"], env, tmp_path)
    assert result.returncode == 2
    assert "is damaged" in result.stderr
    assert "Traceback" not in result.stderr
    assert names(env, tmp_path) == []


def test_git_drift_is_shown(tmp_path, store):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "job.py").write_text(
        "import ckpt\n@ckpt.ckpt\ndef job(x):\n    return x\n"
        "if __name__ == '__main__':\n    job(1)\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(project)]
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    (project / "job.py").write_text((project / "job.py").read_text() + "# edited\n")
    subprocess.run([sys.executable, str(project / "job.py")], check=True)
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    shown = subprocess.run([CDIP, "info", "job"], capture_output=True, text=True, check=True)
    assert "git_dirty   True" in shown.stdout
    assert "(with uncommitted changes) at capture" in shown.stdout
    assert " now, " in shown.stdout


def test_parallel_pytest_workers_share_one_store(ci_checkout, tmp_path):
    # what pytest-xdist does: several pytest processes, one store
    env = home_env(tmp_path, "ci", ci_checkout / "artifacts")
    workers = [subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--ckpt", "-k", k],
        env=env, cwd=ci_checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for k in ("test_spread", "TestSpread or test_with_a_lock")]
    assert [worker.wait(timeout=120) for worker in workers] == [1, 1]
    assert sorted(names(env, ci_checkout)) == sorted(FAILING)
    for name in FAILING:
        assert run([CDIP, "info", name], env, ci_checkout).returncode == 0
