"""`restart` in the replay's debugger: a fresh interpreter, today's code, the breakpoints kept."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pexpect
import pytest
from conftest import BIN, SAMPLES, gone, run_python

CDIP = str(BIN / "cdip")
TIMEOUT = 60  # generous: the machine running the tests may be busy
PROMPTS = {"pdb": r"\(Pdb\) ", "ipdb": "ipdb> ", "pdbpp": r"\(Pdb\+\+\) "}
# where each debugger shows that it stopped at line 10 of ratio.py
AT_LINE_10 = {"pdb": r"ratio\.py\(10\)ratio", "ipdb": "--> 10",
              "pdbpp": r"ratio\.py.*\(.*10.*\)ratio"}  # (pdbpp colours the number)
SHARE_LINE = 10  # `return total / share`


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """The ratio step, failed once (10 / (1 - 1)), in its own directory."""
    app = tmp_path / "app"
    app.mkdir()
    for name in ("ratio.py", "offsets.py"):
        shutil.copy(SAMPLES / "loop" / name, app)
    result = run_python("ratio.py", cwd=app)
    assert result.returncode == 1, result.stderr
    return app


def spawn(app: Path, *args: str, env: dict[str, str] | None = None) -> pexpect.spawn:
    """`cdip run ratio ARGS` on a real terminal, the screen logged to a file."""
    logfile = (app.parent / "session.log").open("a")
    return pexpect.spawn(CDIP, ["run", "ratio", *args], cwd=str(app), encoding="utf-8",
                         timeout=TIMEOUT, logfile=logfile, dimensions=(40, 200),
                         env={**os.environ, **(env or {})})


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus if child.exitstatus is not None else 128 + child.signalstatus


def replay_pid(child: pexpect.spawn, prompt: str) -> int:
    child.sendline("p 'pid', __import__('os').getpid()")
    child.expect(r"'pid', (\d+)")
    pid = int(child.match.group(1))
    child.expect(prompt)
    return pid


@pytest.mark.parametrize("debugger", list(PROMPTS))
def test_restart_runs_the_edited_code_with_the_breakpoint_kept(app, debugger):
    prompt = PROMPTS[debugger]
    child = spawn(app, "--mode", "break", "--debugger", debugger)
    child.expect(prompt)
    child.sendline(f"b {SHARE_LINE}")
    child.expect(prompt)
    before = replay_pid(child, prompt)
    script = app / "ratio.py"
    script.write_text(script.read_text().replace("count - offset()", "count + offset()"))
    child.sendline("restart")
    child.expect("restarting in a fresh interpreter with today's code, 1 breakpoint kept")
    child.expect(prompt)  # stopped at the first line again, as pdb's restart does
    after = replay_pid(child, prompt)
    assert after != before
    assert gone(before)
    child.sendline("c")
    child.expect(AT_LINE_10[debugger])  # the breakpoint, kept
    child.expect(prompt)
    child.sendline("p share")
    child.expect(r"\b2\b")  # 1 + 1: today's code, not the captured 1 - 1
    child.expect(prompt)
    child.sendline("c")
    assert finish(child) == 0


def test_restart_from_the_post_mortem_stops_at_the_kept_breakpoint(app):
    child = spawn(app, "--mode", "until-error")
    child.expect("ZeroDivisionError: division by zero")
    child.expect(PROMPTS["pdb"])
    child.sendline(f"b {SHARE_LINE}")
    child.expect(PROMPTS["pdb"])
    (app / "offsets.py").write_text("def offset():\n    return 0\n")  # the fix
    child.sendline("restart")
    child.expect("1 breakpoint kept")
    child.expect(AT_LINE_10["pdb"])  # until-error now stops at the breakpoint it kept
    child.expect(PROMPTS["pdb"])
    child.sendline("p share")
    child.expect(r"\b1\b")
    child.expect(PROMPTS["pdb"])
    child.sendline("c")
    child.expect("ratio now succeeds: it returned 10.0")
    assert finish(child) == 0


def test_restart_twice_keeps_each_breakpoint_once(app):
    prompt = PROMPTS["pdb"]
    child = spawn(app, "--mode", "break")
    child.expect(prompt)
    child.sendline(f"b {SHARE_LINE}")
    child.expect(prompt)
    for _ in range(2):
        child.sendline("restart")
        child.expect("1 breakpoint kept")
        child.expect(prompt)
    child.sendline("b")  # pdb lists its breakpoints
    child.expect(prompt)
    assert child.before.count(f"ratio.py:{SHARE_LINE}") == 1
    child.sendline("q")
    assert finish(child) == 0


def test_pudb_offers_a_restart_when_its_session_ends(app):
    pytest.importorskip("pudb")
    settings = Path(os.environ["XDG_CONFIG_HOME"]) / "pudb" / "pudb.cfg"
    settings.parent.mkdir(parents=True)
    settings.write_text("[pudb]\nseen_welcome = e999\n")  # no first-run dialog
    child = spawn(app, "--mode", "until-error", "--debugger", "pudb", env={"TERM": "xterm"})
    child.expect("PROCESSING EXCEPTION")  # pudb's post-mortem screen
    child.send("q")
    child.expect("Finished")  # its own end-of-session dialog: Quit (the default) or Restart
    (app / "offsets.py").write_text("def offset():\n    return 0\n")  # the fix
    child.send("r")
    child.expect("restarting in a fresh interpreter with today's code")
    child.expect("ratio now succeeds: it returned 10.0")
    assert finish(child) == 0


def test_a_restarted_replay_killed_before_it_reports_is_not_restarted_again(app):
    prompt = PROMPTS["pdb"]
    child = spawn(app, "--mode", "break")
    child.expect(prompt)
    child.sendline("restart")
    child.expect("restarting")
    child.expect(prompt)
    child.sendline("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert child.expect([pexpect.EOF, "restarting"]) == 0
    child.close()
    assert child.exitstatus == 128 + 9


def test_a_breakpoint_whose_line_is_gone_is_named_not_kept(app):
    prompt = PROMPTS["pdb"]
    child = spawn(app, "--mode", "break")
    child.expect(prompt)
    child.sendline("b 14")  # in the main block
    child.expect("Breakpoint 1 at")
    child.expect(prompt)
    script = app / "ratio.py"
    script.write_text(script.read_text().split('if __name__ == "__main__":')[0].rstrip() + "\n")
    child.sendline("restart")
    child.expect("1 breakpoint kept")  # handed over; the new interpreter cannot set it
    child.expect(r"breakpoint \S*ratio\.py:14 not kept: Line \S*ratio\.py:14 does not exist")
    child.expect(prompt)
    child.sendline("b")
    child.expect(prompt)
    assert "ratio.py:14" not in child.before
    child.sendline("q")
    assert finish(child) == 0
