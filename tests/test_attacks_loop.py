"""Attacks on the edit loop's trust and guest promises: `ckpt run`, `cdip pin`, the hooks.

Each zero-code attack runs a hostile program (tests/samples/attacks_loop/) under plain
`python` and under `python -m ckpt run` in the same directory and compares what a user
or a calling script can see: exit status, stdout, and stderr (ours adds only its summary
of what was saved).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import BIN, SAMPLES

HOSTILE = SAMPLES / "attacks_loop"


def both(program: str, *args: str, stdin: str = "") -> tuple[subprocess.CompletedProcess[str],
                                                            subprocess.CompletedProcess[str]]:
    """The program run by plain python, then by `python -m ckpt run`."""
    runs = []
    for prefix in ([sys.executable], [sys.executable, "-m", "ckpt", "run"]):
        runs.append(subprocess.run([*prefix, program, *args], capture_output=True, text=True,
                                   timeout=60, cwd=HOSTILE, input=stdin))
    return runs[0], runs[1]


def without_summary(stderr: str) -> str:
    """stderr less the lines ckpt adds: 'ckpt: saved N checkpoint(s)...' and its list."""
    kept, skipping = [], False
    for line in stderr.splitlines(keepends=True):
        skipping = line.startswith("ckpt: saved") or (skipping and line.startswith("  cdip run "))
        if not skipping:
            kept.append(line)
    return "".join(kept)


def saved_names() -> list[str]:
    listed = subprocess.run([str(BIN / "cdip"), "info", "--json"], capture_output=True,
                            text=True, timeout=60, check=True)
    return [checkpoint["name"] for checkpoint in json.loads(listed.stdout)]


@pytest.mark.parametrize(("program", "args", "saves"), [
    ("hook_raises.py", [], True),  # Python shows the hook's error, then the original
    ("hook_none.py", [], False),  # Python says the hook is not callable; we save nothing
    ("hook_exits.py", [], True),  # the hook's sys.exit(7) is the status
    ("stderr_none.py", [], True),  # nothing may reach stdout instead of the missing stderr
    ("str_raises.py", [], True),
    ("exits.py", ["code"], False),
    ("exits.py", ["string"], False),
    ("exits.py", ["none"], False),
    ("exits.py", ["list"], False),
    ("exits.py", ["finally"], False),
    ("hard_exit.py", [], False),
])
def test_a_hostile_program_sees_and_shows_what_python_gives_it(program, args, saves):
    plain, ours = both(program, *args)
    assert ours.returncode == plain.returncode
    assert ours.stdout == plain.stdout
    assert without_summary(ours.stderr) == plain.stderr
    assert bool(saved_names()) is saves
    assert "/ckpt/" not in ours.stderr  # never a frame of ours


def test_a_program_reading_stdin_gets_all_of_it():
    plain, ours = both("reads_stdin.py", stdin="12x\n" * 1000)
    assert (ours.returncode, ours.stdout) == (plain.returncode, plain.stdout) == (1, "read 4000\n")
    assert without_summary(ours.stderr) == plain.stderr
    assert saved_names() == ["parse"]


def test_a_reader_that_leaves_gives_the_same_broken_pipe():
    outcomes = []
    for prefix in ([sys.executable], [sys.executable, "-m", "ckpt", "run"]):
        with subprocess.Popen([*prefix, "emits.py"], cwd=HOSTILE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) as child:
            assert child.stdout is not None and child.stderr is not None
            assert child.stdout.readline() == "line 0\n"
            child.stdout.close()  # as `| head -1` leaves
            outcomes.append((child.wait(timeout=60), child.stderr.read()))
    (plain_status, plain_err), (our_status, our_err) = outcomes
    assert our_status == plain_status == 1
    assert without_summary(our_err) == plain_err
    assert "BrokenPipeError" in plain_err
