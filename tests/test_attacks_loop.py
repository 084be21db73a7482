"""Attacks on the edit loop's trust and guest promises: `ckpt run`, `cdip pin`, the hooks.

Each zero-code attack runs a hostile program (tests/samples/attacks_loop/) under plain
`python` and under `python -m ckpt run` in the same directory and compares what a user
or a calling script can see: exit status, stdout, and stderr (ours adds only its summary
of what was saved).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

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
    ("thread_fails.py", [], True),  # a thread's error is saved; the program goes on
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


# -- cdip pin: the pinned test unpickles the pinned bundle and nothing else --------------------


@pytest.fixture
def pinned(tmp_path: Path) -> tuple[Path, str, str]:
    """A failed pipeline pinned as test_pinned.py: (its bundle, the pinned SHA-256, the id)."""
    shutil.copy(SAMPLES / "resume" / "deep_call.py", tmp_path)
    for kind in ("pipeline", "units"):  # units: another checkpoint, to swap in
        failed = subprocess.run([sys.executable, "deep_call.py", kind, "3"], cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
        assert failed.returncode == 1, failed.stderr
    for args in (["pin", "pipeline", "-o", "test_pinned.py"], ["export", "units", "-o", "other"]):
        done = subprocess.run([str(BIN / "cdip"), *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    text = (tmp_path / "test_pinned.py").read_text()
    sha = re.search(r"^SHA256 = '([0-9a-f]{64})'$", text, re.MULTILINE)
    checkpoint = re.search(r"^CHECKPOINT = '([0-9a-f]+)'$", text, re.MULTILINE)
    assert sha is not None and checkpoint is not None
    return tmp_path / "test_pinned.ckpt", sha.group(1), checkpoint.group(1)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_bundle_swapped_after_its_hash_was_checked_is_never_opened(pinned, monkeypatch):
    """The race: the bundle replaced between the hash check and the load."""
    import ckpt.bundle
    from ckpt.pin import replay_pinned

    bundle, sha, checkpoint = pinned
    opened = []
    real_open = ckpt.bundle.open_bundle

    def swap_then_open(path, workdir):
        os.replace(bundle.with_name("other"), bundle)  # the attacker wins the race here
        opened.append(sha256_of(Path(path)))
        return real_open(path, workdir)

    monkeypatch.setattr(ckpt.bundle, "open_bundle", swap_then_open)
    try:
        with pytest.raises(ZeroDivisionError):  # the pinned call, still failing
            replay_pinned(bundle, sha, checkpoint, script=bundle.with_name("deep_call.py"))
    finally:
        sys.modules.pop("deep_call", None)  # the replay imported the script under its name
    assert opened == [sha]
    assert sha256_of(bundle) != sha  # it was swapped, and its bytes were never read


def test_a_fifo_or_link_in_place_of_the_bundle_is_refused_at_once(pinned):
    from ckpt.errors import CkptError
    from ckpt.pin import replay_pinned

    bundle, sha, checkpoint = pinned
    bundle.unlink()
    os.mkfifo(bundle)  # opening it for reading would wait for a writer forever
    with pytest.raises(CkptError, match="not a regular file"):
        replay_pinned(bundle, sha, checkpoint)
    bundle.unlink()
    bundle.symlink_to(bundle.with_name("other"))
    with pytest.raises(CkptError, match="is not the bundle this test pins"):
        replay_pinned(bundle, sha, checkpoint)


# -- redaction: zero-code capture stores no redacted value, and the replay says so ------------


def test_ckpt_run_stores_no_redacted_secret_and_the_replay_says_it_is_a_placeholder(store):
    secret = "hunter2-7f3a9c"
    environment = {**os.environ, "SECRET": secret, "PYCKPT_REDACT": "password,*_token"}
    crashed = subprocess.run(
        [sys.executable, "-m", "ckpt", "run", "secret_login.py", f"--password={secret}"],
        cwd=HOSTILE, capture_output=True, text=True, timeout=60, env=environment)
    assert crashed.returncode == 1
    assert saved_names() == ["main", "connect"]
    for path in store.rglob("*"):  # neither the secret nor its reverse, in any file
        if path.is_file():
            assert secret.encode() not in path.read_bytes()
            assert secret[::-1].encode() not in path.read_bytes()
    replay = subprocess.run([str(BIN / "cdip"), "run", "connect", "--mode", "run"], cwd=HOSTILE,
                            capture_output=True, text=True, timeout=60)
    assert replay.returncode == 1
    assert ("argument 'password' was redacted at capture (its value was never stored): it is "
            "a placeholder, <redacted str>, in this replay") in replay.stderr


@pytest.mark.usefixtures("pinned")
def test_a_pinned_test_imports_the_checkouts_script_never_the_recorded_one(tmp_path):
    """The recorded path still exists, and holds other code: the clone's own script runs."""
    clone = tmp_path.parent / f"{tmp_path.name}-clone"
    shutil.copytree(tmp_path, clone)
    recorded = tmp_path / "deep_call.py"  # where the checkpoint says the script is
    recorded.write_text("raise SystemExit('the recorded path ran')\n")
    script = clone / "deep_call.py"
    script.write_text(script.read_text().replace("return self.total / parts",
                                                 "return -1.0"))
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("PYCKPT_")}
    ran = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "test_pinned.py"], cwd=clone, capture_output=True, text=True,
                         timeout=120, env={**environment, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "recorded path ran" not in ran.stdout + ran.stderr
