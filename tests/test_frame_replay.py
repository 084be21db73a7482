"""`cdip run NAME --frame N` / `--from-changed`: a saved inner frame's function re-called.

Each sample step (tests/samples/resume/deep_call.py) appends a line to `outer-ran`
when it runs: a frame replay that redid the outer work would add one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pexpect
import pytest
from conftest import BIN, SAMPLES, run_python

from ckpt.binding import assigned_parameters

CDIP = str(BIN / "cdip")


def cdip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CDIP, *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def failed(tmp_path: Path):
    """Run one kind of the sample until it fails; returns the script's path."""
    script = tmp_path / "deep_call.py"
    shutil.copy(SAMPLES / "resume" / "deep_call.py", script)
    shutil.copy(SAMPLES / "resume" / "helpers.py", tmp_path)

    def fail(kind: str) -> Path:
        result = run_python(str(script), kind, "3", cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert runs_of_outer(tmp_path) == 1
        return script

    return fail


def runs_of_outer(folder: Path) -> int:
    return len((folder / "outer-ran").read_text().splitlines())


def edit(script: Path, old: str, new: str) -> None:
    text = script.read_text()
    assert text.count(old) == 1, old
    script.write_text(text.replace(old, new))


def test_the_innermost_frame_is_recalled_with_its_saved_arguments_and_not_the_outer_work(
        failed, tmp_path):
    script = failed("pipeline")
    before = cdip("run", "pipeline", "--frame", "-1", "--mode", "run", cwd=tmp_path)
    assert before.returncode == 1, before.stderr
    assert "Stats.ratio raised ZeroDivisionError" in before.stdout
    edit(script, "return self.total / parts", "return self.total / parts if parts else -1.0")
    after = cdip("run", "pipeline", "--frame", "-1", "--mode", "run", cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "Stats.ratio returned -1.0"
    # said before it runs: whose frame, and that its arguments are its locals at the error
    assert ("frame 2, Stats.ratio (" in after.stderr
            and "its arguments taken from its locals saved at the error" in after.stderr)
    assert "self (Stats): mutable; a change made in place before the error" in after.stderr
    assert runs_of_outer(tmp_path) == 1  # the outer step never ran again


def test_a_frame_in_another_module_runs_that_modules_code_of_today(failed, tmp_path):
    failed("library")
    edit(tmp_path / "helpers.py", "return [value / total for value in values]",
         "return [value / (total or 1) for value in values]")
    result = cdip("run", "library", "--frame", "1", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "normalise returned [0.0, 1.0, 2.0]"
    assert f"code: {tmp_path}/helpers.py in {tmp_path}" in result.stderr
    assert "source of normalise changed since capture" in result.stderr
    assert runs_of_outer(tmp_path) == 1


def test_a_method_gets_self_from_the_saved_locals(failed, tmp_path):
    script = failed("pipeline")
    edit(script, "return self.total / parts", "return (self.total, parts)")
    result = cdip("run", "pipeline", "--frame", "2", "--mode", "run", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"repr": "(6, 0)"' in result.stdout  # self.total of the saved instance; parts 0


def test_from_changed_picks_the_innermost_edited_frame_and_flags_a_reassigned_argument(
        failed, tmp_path):
    script = failed("pipeline")
    unchanged = cdip("run", "pipeline", "--from-changed", "--mode", "run", cwd=tmp_path)
    assert unchanged.returncode == 2
    assert "--from-changed: the source of none of the 3 saved frames' functions changed" \
        in unchanged.stderr
    edit(script, "return Stats(total).ratio(len(rows) - 2)",
         "return Stats(total).ratio(len(rows))")
    result = cdip("run", "pipeline", "--from-changed", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--from-changed: frame 1, summarise (" in result.stderr
    # rows was cut to its first two items before the error: the replay says so, and runs with it
    assert ("rows is assigned to in its body at capture (line 28; the error was at line 29)"
            not in result.stderr)  # its source changed: today's lines are not the frame's
    assert "rows is assigned to in its body at capture: its saved value is the one at the " \
        "error" in result.stderr
    assert result.stdout.strip() == "summarise returned 1.0"  # sum([0, 1]) * 2 / 2
    assert "source of summarise changed since capture" in result.stderr
    assert runs_of_outer(tmp_path) == 1


def test_a_class_method_and_a_static_method_are_recalled(failed, tmp_path):
    script = failed("units")
    edit(script, "if value < 0:", "if value < -5:")
    parse = cdip("run", "units", "--frame", "1", "--mode", "run", cwd=tmp_path)
    assert parse.returncode == 0, parse.stderr
    assert parse.stdout.strip() == "Units.parse returned [3, -1]"  # cls from the saved locals
    check = cdip("run", "units", "--frame", "-1", "--mode", "run", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "Units.check returned -1"
    assert runs_of_outer(tmp_path) == 1


def test_a_nested_function_closes_over_its_enclosing_frames_saved_values(failed, tmp_path):
    script = failed("nested")
    edit(script, "return part / divisor", "return (part, divisor)")
    result = cdip("run", "nested", "--frame", "-1", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "nested.<locals>.share returned (3, 0)"
    assert runs_of_outer(tmp_path) == 1


def test_a_frame_that_cannot_be_recalled_is_one_clear_line(failed, tmp_path):
    failed("lambda")
    result = cdip("run", "with_lambda", "--frame", "1", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("cdip: error:")]
    assert len(errors) == 1
    assert errors[0].startswith("cdip: error: frame 1, with_lambda.<locals>.<lambda> (")
    assert errors[0].endswith("cannot be re-called: it is a lambda, not a function")
    assert result.stderr.splitlines()[-1] == (
        "hint: the nearest frame around it that can be is --frame 0")
    assert "Traceback" not in result.stderr
    assert runs_of_outer(tmp_path) == 1


def test_frame_minus_one_is_the_innermost_frame_that_can_be_recalled(failed, tmp_path):
    """As a user means it: the innermost function, not the lambda (or comprehension) in it."""
    script = failed("lambda")
    edit(script, "key=lambda item: 1 / (item - 1))", "key=lambda item: -item)")
    result = cdip("run", "with_lambda", "--frame", "-1", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("--frame -1: frame 1, with_lambda.<locals>.<lambda> (" in result.stderr
            and ") is a lambda, which cannot be re-called: re-calling frame 0, with_lambda ("
            in result.stderr)
    assert result.stdout.strip() == "with_lambda returned [2, 1, 0]"


def test_a_generators_frame_is_recalled_from_its_start_and_says_so(failed, tmp_path):
    script = failed("stream")
    edit(script, "yield 1 / (item - 1)", "yield item")
    result = cdip("run", "stream", "--frame", "-1", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("  ratios is a generator: re-called, it starts again from its first line, and "
            "yields again what it yielded before the error") in result.stderr
    assert "ratios yielded 3 values" in result.stdout
    assert runs_of_outer(tmp_path) == 1


def test_a_frame_number_out_of_range_is_one_clear_line(failed, tmp_path):
    failed("stream")
    for asked, saved in (("2", "there are 2 saved frames (0 to 1"), ("-3", "there are 2 saved")):
        result = cdip("run", "stream", "--frame", asked, "--mode", "run", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.splitlines()[-1].startswith(f"cdip: error: --frame {asked}: {saved}")


def test_a_frame_whose_function_was_renamed_since_is_refused(failed, tmp_path):
    script = failed("pipeline")
    script.write_text(script.read_text().replace("summarise", "summarize"))
    result = cdip("run", "pipeline", "--frame", "1", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 2
    assert ("cdip: error: frame 1, summarise (" in result.stderr
            and "cannot be re-called: deep_call:summarise no longer exists" in result.stderr)
    assert "Traceback" not in result.stderr


def test_a_parameter_added_since_capture_without_a_default_is_refused(failed, tmp_path):
    script = failed("pipeline")
    edit(script, "def ratio(self, parts):", "def ratio(self, parts, weight):")
    result = cdip("run", "pipeline", "--frame", "-1", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 2
    assert ("cdip: error: Stats.ratio cannot be called with the saved arguments: its "
            "parameter 'weight' has no saved value and no default") in result.stderr
    assert runs_of_outer(tmp_path) == 1


def test_a_reassigned_argument_is_flagged_with_its_lines_while_the_source_is_unchanged(
        failed, tmp_path):
    failed("pipeline")
    result = cdip("run", "pipeline", "--frame", "1", "--mode", "run", cwd=tmp_path)
    assert result.returncode == 1
    assert ("  rows is assigned to in its body at capture (line 28; the error was at line 29): "
            "its saved value is the one at the error") in result.stderr
    assert "scale is assigned" not in result.stderr  # never assigned: as it was passed
    assert "  rows (list): mutable" in result.stderr and "scale (int)" not in result.stderr


def test_until_error_on_a_frame_opens_its_post_mortem_on_a_terminal(failed, tmp_path):
    failed("pipeline")
    log = (tmp_path / "session.log").open("a")
    child = pexpect.spawn(CDIP, ["run", "pipeline", "--frame", "-1"], encoding="utf-8",
                          timeout=30, logfile=log, cwd=str(tmp_path), dimensions=(40, 200))
    child.expect("mode until-error")  # the default for an error checkpoint, as without --frame
    child.expect("Stats.ratio raised ZeroDivisionError: entering post-mortem")
    child.expect(r"\(Pdb\) ")
    child.sendline("p parts, self.total")
    child.expect(r"\(0, 6\)")
    child.expect(r"\(Pdb\) ")
    child.sendline("q")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert runs_of_outer(tmp_path) == 1


def test_a_frame_replays_in_the_shell_too(failed, tmp_path):
    failed("pipeline")
    result = cdip("run", "pipeline", "--frame", "-1", "--mode", "shell",
                  "-c", "print('parts is', parts, 'total is', self.total)", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "parts is 0 total is 6" in result.stdout
    assert "the arguments of Stats.ratio: self, parts" in result.stdout


def test_mode_locals_still_shows_the_chosen_frames_locals(failed, tmp_path):
    failed("pipeline")
    result = cdip("run", "pipeline", "--mode", "locals", "--frame", "1",
                  "-c", "print('saved:', rows, scale, total)", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "the locals of summarise" in result.stdout
    assert "saved: [0, 1] 2 6" in result.stdout  # rows as cut down before the error


def test_frame_and_from_changed_together_are_a_usage_error(failed, tmp_path):
    failed("pipeline")
    result = cdip("run", "pipeline", "--frame", "1", "--from-changed", cwd=tmp_path)
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr


def test_the_parameters_a_body_assigns_are_read_from_its_bytecode():
    def body(a, b, c, d, e, f, g, unchanged, mutated, *args, h, **kwargs):
        a = 1
        b += 1
        for c in ():
            print(c)
        with open(__file__) as d:
            pass
        try:
            pass
        except ValueError as e:
            print(e)
        del f

        def inner():
            nonlocal g
            g = 2

        mutated.append(unchanged)  # in place: not an assignment, and not knowable
        args = ()
        return a, d, args, h, inner  # never called: only its code is read

    assert assigned_parameters(body.__code__) == ["a", "args", "b", "c", "d", "e", "f", "g"]
