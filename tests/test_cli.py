"""The command line in a subprocess, under each of its three names."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

from conftest import SAMPLES, run_python

import ckpt


def run_pipeline(tmp_path: Path, threshold: str = "2.0") -> Path:
    script = tmp_path / "pipeline.py"
    if not script.exists():
        shutil.copy(SAMPLES / "pipeline.py", script)
    run_python(str(script), threshold)
    return script


def test_info_on_a_missing_store_is_friendly(cli, store):
    result = cli("info")
    assert result.returncode == 0, result.stderr
    assert f"store: {store}" in result.stdout
    assert "no checkpoints yet" in result.stdout
    assert not store.exists()


def test_info_lists_oldest_first_with_every_column(cli, tmp_path, store):
    run_pipeline(tmp_path)
    result = cli("info")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"store: {store} (2 checkpoint(s), ")
    assert lines[1].split() == ["ID", "NAME", "TRIGGER", "CREATED", "EXCEPTION", "FUNCTION",
                                "SIZE"]
    load_row, summarise_row = lines[2], lines[3]
    entries = ckpt.checkpoints()
    assert load_row.startswith(entries[0].id) and " load " in load_row
    assert " call " in load_row and "__main__:load" in load_row
    assert summarise_row.startswith(entries[1].id)
    assert "ZeroDivisionError: division by zero" in summarise_row
    assert " error " in summarise_row and "KiB" in summarise_row


def test_info_json_schema(cli, tmp_path):
    run_pipeline(tmp_path)
    result = cli("info", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == ["load", "summarise"]
    row = rows[1]
    assert set(row) >= {"id", "name", "trigger", "created", "function", "exception", "size"}
    assert row["trigger"] == "error"
    assert row["function"] == "__main__:summarise"
    assert row["exception"] == {"type": "ZeroDivisionError", "message": "division by zero"}
    assert isinstance(row["size"], int) and row["size"] > 0
    assert row["created"].endswith("+00:00")
    assert rows[0]["exception"] is None


def test_info_name_shows_one_checkpoint_in_detail(cli, tmp_path):
    script = run_pipeline(tmp_path)
    result = cli("info", "summarise")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "name:      summarise" in out
    assert "source:    unchanged since capture" in out
    assert "threshold" in out and "2.0" in out
    assert "values" in out and "list" in out and "len 10" in out
    assert "mean = sum(kept) / len(kept)" in out
    assert "locals at the error (summarise" in out
    assert "kept" in out and "[]" in out
    assert "argv" in out and "2.0" in out
    script.write_text(script.read_text().replace("return mean", "return mean or 0.0"))
    assert "source:    changed since capture" in cli("info", "summarise").stdout
    script.write_text(script.read_text().replace("def summarise(", "def summarize("))
    assert "not found in" in cli("info", "summarise").stdout


def test_info_name_json_and_id(cli, tmp_path):
    run_pipeline(tmp_path)
    newest = ckpt.checkpoints()[-1]
    result = cli("info", newest.id, "--json")
    data = json.loads(result.stdout)
    assert data["id"] == newest.id
    assert data["exception"]["type"] == "ZeroDivisionError"
    assert "Traceback" in data["exception"]["traceback"]
    assert [a["name"] for a in data["arguments"]] == ["values", "threshold"]
    assert data["frames"][0]["locals"][-1]["name"] in ("kept", "mean", "threshold", "values")
    assert data["source"] == "unchanged since capture"


def test_unknown_name_exits_2_without_a_traceback(cli, tmp_path):
    run_pipeline(tmp_path)
    result = cli("info", "nope")
    assert result.returncode == 2
    assert "error: no checkpoint named 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_exits_2(cli):
    assert cli("frobnicate").returncode == 2
    assert cli().returncode == 2
    assert cli("gc", "--keep", "0").returncode == 2


def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.returncode == 0
    for command in ("init", "info", "rm", "clear", "gc"):
        assert command in result.stdout


def test_each_command_parses_and_helps_alike_with_only_its_own_parser_built():
    from ckpt.commands import _COMMANDS, build_parser

    every = build_parser("cdip")
    subparsers = next(a for a in every._actions if a.dest == "command").choices
    for name in _COMMANDS:
        alone = build_parser("cdip", name)
        built = next(a for a in alone._actions if a.dest == "command").choices
        assert list(built) == [name]  # the others were not built
        assert built[name].format_help() == subparsers[name].format_help()
        assert built[name].format_usage() == subparsers[name].format_usage()
    assert vars(build_parser("cdip", "info").parse_args(["info", "x", "--json"])) == vars(
        every.parse_args(["info", "x", "--json"]))
    # not a command (help, an option, a typo): every parser, as before
    for first in ("--help", "--dir", "inf", None):
        assert build_parser("cdip", first).format_help() == every.format_help()


def test_help_is_wrapped_to_the_terminal_width(cli):
    narrow, wide = (cli("run", "--help", env={"COLUMNS": str(columns)}).stdout.splitlines()
                    for columns in (50, 120))
    assert len(narrow) > len(wide)
    # argparse never breaks an option's own spelling (its choices, or a usage line of
    # one long option, or of a group of exclusive ones, under a long program name);
    # every other line fits
    unbreakable = r" *\[--[a-z-]+( [A-Z]+)?( \| --[a-z-]+( [A-Z]+)?)*\]"
    assert all(len(line) <= 48 for line in narrow
               if "{" not in line and not re.fullmatch(unbreakable, line))
    assert max(len(line) for line in wide) > 50


def test_rm_by_id_and_by_name(cli, tmp_path):
    run_pipeline(tmp_path)
    run_pipeline(tmp_path)
    first, *_ = ckpt.checkpoints()
    assert cli("rm", first.id).returncode == 0
    assert first.id not in [e.id for e in ckpt.checkpoints()]
    assert [e.name for e in ckpt.checkpoints()] == ["summarise", "load", "summarise"]
    newest = ckpt.checkpoints()[-1].id
    result = cli("rm", "summarise")
    assert result.returncode == 0 and newest in result.stdout
    assert [e.name for e in ckpt.checkpoints()] == ["summarise", "load"]
    assert cli("rm", "--all", "load").returncode == 0
    assert [e.name for e in ckpt.checkpoints()] == ["summarise"]
    assert cli("rm", "nope").returncode == 2


def test_clear_asks_and_yes_skips(cli, tmp_path):
    run_pipeline(tmp_path)
    refused = cli("clear")  # no terminal: refuses rather than hang
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert len(ckpt.checkpoints()) == 2
    assert cli("clear", "--yes").returncode == 0
    assert ckpt.checkpoints() == []
    assert cli("clear", "--yes").returncode == 0


def test_gc_keeps_the_newest_per_name_and_removes_leftovers(cli, tmp_path, store):
    for _ in range(3):
        run_pipeline(tmp_path)
    from ckpt.store import _HOST

    dead = store / f".tmp-999999999-deadbeef-{_HOST}"  # its writer is gone
    dead.write_bytes(b"half a checkpoint")
    elsewhere = store / ".tmp-4242-cafecafe-otherhost"  # another host's, two days old
    elsewhere.write_bytes(b"old")
    long_ago = time.time() - 2 * 86400
    os.utime(elsewhere, (long_ago, long_ago))
    recent_elsewhere = store / ".tmp-4242-feedfeed-otherhost"  # may still be writing
    recent_elsewhere.write_bytes(b"in progress")
    alive = store / f".tmp-{os.getpid()}-beefbeef-{_HOST}"  # this process: still writing
    alive.write_bytes(b"in progress")
    # same host name, another PID namespace (a container): its pid means nothing here
    other_namespace = store / f".tmp-999999999-abadcafe-{_HOST}@1"
    other_namespace.write_bytes(b"in progress")
    orphan = store / "x-00000000~00000000000000000001~abcdefabcdef.error"
    orphan.write_bytes(b"no call part")
    os.utime(orphan, (time.time() - 120, time.time() - 120))
    # an error part is renamed into place just before the call part it completes
    young_orphan = store / "x-00000000~00000000000000000002~abcdefabcdee.error"
    young_orphan.write_bytes(b"its call part comes next")
    result = cli("gc", "--keep", "1")
    assert result.returncode == 0, result.stderr
    assert "removed 4 checkpoint(s) and 3 leftover file(s)" in result.stdout
    assert [e.name for e in ckpt.checkpoints()] == ["load", "summarise"]
    assert not dead.exists() and not elsewhere.exists() and not orphan.exists()
    assert alive.exists() and recent_elsewhere.exists() and young_orphan.exists()
    assert other_namespace.exists()


def test_broken_files_are_listed_and_marked_and_the_rest_still_listed(cli, tmp_path, store):
    run_pipeline(tmp_path)
    good, bad = ckpt.checkpoints()
    Path(bad.call_path).write_bytes(b"")
    result = cli("info")
    assert result.returncode == 0, result.stderr
    assert good.id in result.stdout
    bad_row = next(line for line in result.stdout.splitlines() if line.startswith(bad.id))
    assert "BROKEN" in bad_row and "not a ckpt file" in bad_row
    shown = cli("info", bad.id)
    assert shown.returncode == 2 and "Traceback" not in shown.stderr
    assert cli("gc").returncode == 0
    assert [e.id for e in ckpt.checkpoints()] == [good.id]
