"""Issue 14's whole loop, as a user lives it, through the real programs.

A crash in an undecorated script (`ckpt run pipeline.py`), the innermost frame
replayed while the user edits (`cdip run step --frame -1 --watch --until-pass`),
then the fix pinned as a regression test (`cdip pin step`) that pytest runs:
and the expensive load never runs again after the crash.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
from conftest import BIN, SAMPLES

TIMEOUT = 90  # generous: the machine running the tests may be busy
BROKEN = "    return [value / scale for value in values]\n"
FIXED = "    return [value / (scale or 1) for value in values]\n"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def test_from_a_crash_in_an_undecorated_script_to_a_pinned_fix(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    script = project / "pipeline.py"
    shutil.copy(SAMPLES / "loop_flow" / "pipeline.py", script)
    runs = project / "load-runs.txt"

    crashed = run(str(BIN / "ckpt"), "run", "pipeline.py", cwd=project)
    assert crashed.returncode == 1, crashed.stderr
    assert "ZeroDivisionError: division by zero" in crashed.stderr
    assert runs.read_text() == "1"

    # the innermost frame that can be called again is normalise (not its list
    # comprehension): it is re-called with its saved locals while the user edits
    watch = pexpect.spawn(str(BIN / "cdip"), ["run", "step", "--frame", "-1", "--watch",
                                              "--until-pass"],
                          cwd=str(project), encoding="utf-8", timeout=TIMEOUT,
                          dimensions=(40, 200), logfile=(tmp_path / "watch.log").open("a"))
    watch.expect(r"round 1: fail: normalise raised ZeroDivisionError")
    watch.expect(r"watching .* \(Ctrl-C to stop\)")
    script.write_text(script.read_text().replace(BROKEN, FIXED))
    watch.expect(r"round 2: pass: normalise returned \[0\.0, 1\.0, 2\.0")
    watch.expect(pexpect.EOF)
    watch.close()
    assert watch.exitstatus == 0, watch.before

    (project / "tests").mkdir()
    pinned = run(str(BIN / "cdip"), "pin", "step", cwd=project)
    assert pinned.returncode == 0, pinned.stderr
    assert (project / "tests" / "test_pin_step.py").is_file()
    passed = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
                 cwd=project)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "1 passed" in passed.stdout

    # the pinned test guards the fix: with the bug back, it fails
    script.write_text(script.read_text().replace(FIXED, BROKEN))
    failed = run(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests",
                 cwd=project)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "ZeroDivisionError" in failed.stdout

    assert runs.read_text() == "1", "the expensive load ran again"
