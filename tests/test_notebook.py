"""`%load_ext ckpt` in a real Jupyter kernel: failing cells saved; `%ckpt info`, `run`, `here`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, SAMPLES, run_python

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = SAMPLES / "zerocode" / "magic.ipynb"


def text(cell: dict, name: str) -> str:
    """A cell's output on one stream (stdout, stderr), all of it."""
    return "".join(o["text"] for o in cell["outputs"] if o.get("name") == name)


def error(cell: dict) -> tuple[str, str] | None:
    found = [(o["ename"], o["evalue"]) for o in cell["outputs"] if o["output_type"] == "error"]
    return found[0] if found else None


def result(cell: dict) -> str | None:
    found = [o["data"]["text/plain"] for o in cell["outputs"]
             if o["output_type"] == "execute_result"]
    return found[0] if found else None


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], list[dict]]:
    """The sample notebook run once in a fresh kernel; its cells, and the store's listing after.

    Module-scoped: a kernel takes seconds to start. Its own store and home, as every test's.
    """
    root = tmp_path_factory.mktemp("notebook")
    environment = {"PYCKPT_DIR": str(root / "store"), "HOME": str(root),
                   "XDG_CONFIG_HOME": str(root / "config"), "XDG_STATE_HOME": str(root / "state")}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        notebook = nbformat.read(str(NOTEBOOK), as_version=4)
        nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(root)}}).execute()
        listed = subprocess.run([str(BIN / "cdip"), "info", "--json"], capture_output=True,
                                text=True, timeout=60, check=True).stdout
    return notebook.cells, json.loads(listed)


def test_a_failing_cell_saves_each_function_of_the_notebook(executed):
    cells, listed = executed
    crash = cells[2]
    assert error(crash) == ("ZeroDivisionError", "division by zero")
    saved = text(crash, "stderr")
    assert "ckpt: saved 2 checkpoint(s) of this error" in saved
    assert "cdip run pipeline " in saved and "cdip run scale " in saved
    # the decorated function is saved by its decorator, and by nothing else
    assert error(cells[3]) == ("IndexError", "list index out of range")
    assert "ckpt: saved" not in text(cells[3], "stderr")
    assert sorted(c["name"] for c in listed) == ["pipeline", "scale", "shift"]
    assert {c["function"] for c in listed} == {"__main__:pipeline", "__main__:scale",
                                               "__main__:shift"}


def test_ckpt_info_lists_the_store(executed):
    cells, _ = executed
    listing = text(cells[4], "stdout")
    assert "3 checkpoint(s)" in listing
    for name in ("pipeline", "scale", "shift"):
        assert f"__main__:{name}" in listing


def test_ckpt_here_calls_the_kernels_current_definition(executed):
    cells, listed = executed
    # before the fix: today's (unchanged) shift raises again, shown, and not saved again
    assert error(cells[5]) == ("IndexError", "list index out of range")
    shown = "".join(next(o for o in cells[5]["outputs"] if o["output_type"] == "error")
                    ["traceback"])
    assert "notebook.py" not in shown  # their error, from their function: no frame of ours
    assert "[... skipping hidden 3 frame]" in shown
    assert [c["name"] for c in listed].count("shift") == 1
    # the cell that redefines both ran; `here` finds the new definitions by name
    here = cells[7]
    assert "scale (id " in text(here, "stdout")
    said = text(here, "stdout")
    assert "bound values, factor; calling scale as the kernel defines it now" in said
    assert "(saved from the crash's stack: these are its parameters' values at the error)" \
        in said
    assert "saved from the crash's stack" not in text(cells[9], "stdout")  # its decorator's
    assert result(here) == "[1.0, 2.0]"
    assert text(cells[8], "stdout") == "[1, 2] 0\n"  # the saved arguments, as variables
    assert result(cells[9]) == "[1]"  # a decorated function: today's, under the decorator


def test_ckpt_run_replays_in_a_fresh_process(executed):
    cells, _ = executed
    replay = text(cells[10], "stdout")
    assert "replaying scale" in replay and "mode run" in replay
    # a fresh interpreter has no notebook: the copy saved at capture runs, and says so
    assert "defined in a notebook cell: replaying the copy saved at capture" in replay
    assert "scale raised ZeroDivisionError: division by zero" in replay
    interactive = text(cells[11], "stdout")
    assert "--mode shell needs a terminal" in interactive
    assert "(exit status 2)" in interactive


def test_ckpt_here_of_an_unknown_name_is_a_usage_error(executed):
    cells, _ = executed
    said = text(cells[12], "stderr")  # IPython shows a magic's UsageError in one line
    assert said.startswith("UsageError: ") and "no_such_step" in said
    assert "Traceback" not in said and error(cells[12]) is None


def test_a_bad_magic_line_is_a_usage_error_not_our_traceback(executed):
    cells, _ = executed
    said = text(cells[13], "stderr")
    assert said == "UsageError: %ckpt here 'shift: No closing quotation\n"
    assert error(cells[13]) is None


def test_their_own_ipython_exception_handler_still_runs(tmp_path: Path):
    """IPython has one custom exception handler: ckpt's runs theirs, then saves."""
    code = ("import ckpt\n"
            "def theirs(shell, kind, value, tb, tb_offset=None):\n"
            "    print('their handler:', kind.__name__, value)\n"
            "get_ipython().set_custom_exc((ValueError,), theirs)\n"
            "ckpt.install_excepthook()\n"
            "def check(text):\n    raise ValueError(text)\n\ncheck('bad')\n")
    shown = run_python("-m", "IPython", "--quick", "--no-banner", "--colors=NoColor", "-c", code,
                       cwd=tmp_path)
    assert "their handler: ValueError bad" in shown.stdout
    assert "Traceback" not in shown.stdout + shown.stderr  # theirs showed it, not IPython's
    assert "ckpt: saved 1 checkpoint(s) of this error" in shown.stderr


def test_install_excepthook_in_ipython_saves_a_failing_cell(tmp_path: Path):
    code = ("import ckpt\nckpt.install_excepthook()\n"
            "def typed(text):\n    return text[5]\n\ntyped('abc')\n")
    shown = run_python("-m", "IPython", "--quick", "--no-banner", "--colors=NoColor", "-c", code,
                       cwd=tmp_path)
    assert "IndexError: string index out of range" in shown.stdout + shown.stderr  # IPython's
    assert "ckpt: saved 1 checkpoint(s) of this error" in shown.stderr
    replay = subprocess.run([str(BIN / "cdip"), "run", "typed", "--mode", "run"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert replay.returncode == 1
    assert "typed raised IndexError: string index out of range" in replay.stdout


def test_import_ckpt_leaves_the_notebook_and_capture_parts_unimported():
    code = ("import sys, ckpt; before = set(sys.modules); ckpt.load_ipython_extension; "
            "print(sorted(before & {0!r})); print(sorted(set(sys.modules) & {0!r}))")
    parts = {"IPython", "ckpt.notebook", "ckpt.excepthook", "ckpt.stack", "ckpt.zerocode"}
    result = run_python("-c", code.format(parts), check=True)
    on_import, on_lookup = result.stdout.splitlines()
    assert on_import == "[]"
    assert on_lookup == "['ckpt.notebook']"  # `%load_ext` looks it up; IPython is theirs


def test_a_notebook_with_the_extension_unloaded_saves_nothing(tmp_path: Path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in (
        "%load_ext ckpt", "%unload_ext ckpt", "def fail(x):\n    return 1 / x\n\n\nfail(0)")])
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert error(notebook.cells[2]) == ("ZeroDivisionError", "division by zero")
    assert not (tmp_path / "store").exists()
