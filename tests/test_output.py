"""What `cdip` prints never crashes, and shows data frames and tensors as people expect."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import BIN, PROGRAMS

import ckpt
from ckpt import values

CDIP = str(BIN / "cdip")
LONG_NAME = "étape-" + "x" * 60  # longer than listing shows: cut with an ellipsis


@pytest.fixture
def unicode_checkpoint(store):
    @ckpt.ckpt(active=False, name=LONG_NAME)
    def step(naïve):
        raise ValueError("naïve → broken " * 10)

    with pytest.raises(ValueError):
        step("héllo wörld")
    return store


@pytest.mark.parametrize("program", list(PROGRAMS))
@pytest.mark.parametrize("encoding", ["ascii", "latin-1", "utf-8"])
def test_any_stdout_encoding_lists_and_shows_without_crashing(unicode_checkpoint, program,
                                                              encoding):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*PROGRAMS[program], *args], capture_output=True, timeout=60,
                              encoding=encoding, errors="strict",
                              env={**os.environ, "PYTHONIOENCODING": encoding})

    for args in (["info"], ["info", LONG_NAME], ["info", LONG_NAME, "--json"], ["info", "--json"]):
        result = run(*args)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    listed = run("info").stdout
    assert ("…" if encoding == "utf-8" else "...") in listed
    assert ("héllo" if encoding != "ascii" else "h\\xe9llo") in run("info", LONG_NAME).stdout


def test_an_unknown_name_under_ascii_is_a_clear_error(cli, unicode_checkpoint):
    result = cli("info", "étape", env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no checkpoint named" in result.stderr


def test_a_replay_banner_under_ascii_does_not_crash(unicode_checkpoint):
    result = subprocess.run([CDIP, "run", LONG_NAME, "--mode", "run"], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert "UnicodeEncodeError" not in result.stderr
    assert "replaying" in result.stderr


def test_a_data_frame_is_shown_with_its_shape_columns_and_dtypes(cli, store):
    pandas = pytest.importorskip("pandas")

    @ckpt.ckpt(active=False)
    def select(table, wanted):
        return table[wanted]

    frame = pandas.DataFrame({"height": [1.5, 1.7, 1.8], "name": ["a", "b", "c"],
                              "count": [1, 2, 3]})
    with pytest.raises(KeyError):
        select(frame, ["weight"])
    name = "test_a_data_frame_is_shown_with_its_shape_columns_and_dtypes.<locals>.select"
    shown = cli("info", name)
    assert shown.returncode == 0, shown.stderr
    assert "pandas.DataFrame" in shown.stdout
    assert "shape (3, 3)" in shown.stdout
    assert "columns: height float64, name " in shown.stdout
    assert "count int64" in shown.stdout
    data = json.loads(cli("info", name, "--json").stdout)
    (table,) = [a for a in data["arguments"] if a["name"] == "table"]
    assert table["shape"] == [3, 3]
    assert table["columns"][0] == {"name": "height", "dtype": "float64"}
    assert [c["name"] for c in table["columns"]] == ["height", "name", "count"]


def test_a_wide_data_frame_shows_its_first_columns_only(store):
    pandas = pytest.importorskip("pandas")
    wide = pandas.DataFrame({f"c{i}": [i] for i in range(500)})
    described = values.describe(wide)
    assert described["shape"] == [1, 500]
    assert len(described["columns"]) == values.COLUMNS_SHOWN
    assert described["columns"][-1] == {"name": f"c{values.COLUMNS_SHOWN - 1}",
                                        "dtype": "int64"}


def test_a_tensor_is_shown_with_its_shape_dtype_and_device(cli, store):
    torch = pytest.importorskip("torch")

    @ckpt.ckpt(active=False)
    def scale(weights):
        raise RuntimeError("shapes do not match")

    with pytest.raises(RuntimeError):
        scale(torch.zeros(2, 3, dtype=torch.float16))
    name = "test_a_tensor_is_shown_with_its_shape_dtype_and_device.<locals>.scale"
    shown = cli("info", name)
    assert shown.returncode == 0, shown.stderr
    assert "shape (2, 3) torch.float16 on cpu" in shown.stdout
    data = json.loads(cli("info", name, "--json").stdout)
    assert data["arguments"][0]["device"] == "cpu"
    assert data["arguments"][0]["dtype"] == "torch.float16"


def test_a_numpy_array_has_no_device_noise(store):
    numpy = pytest.importorskip("numpy")
    described = values.describe(numpy.zeros((2, 2)))
    assert described["shape"] == [2, 2]
    assert "device" not in described
    assert "columns" not in described


def test_describing_imports_neither_pandas_nor_torch():
    code = ("import sys, ckpt.values as v; import numpy; "
            "[v.describe(x) for x in (1, 'a', [1], numpy.zeros(3), {'a': 1})]; "
            "print(sorted(m for m in ('pandas', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"


class _HostileColumns:
    """A frame-like value whose columns fail: only the columns are lost."""

    shape = (2, 2)
    dtype = "weird"

    @property
    def columns(self):
        raise RuntimeError("no columns for you")

    dtypes = ()

    @property
    def device(self):
        raise RuntimeError("no device either")


def test_a_value_whose_columns_or_device_fail_keeps_the_rest():
    described = values.describe(_HostileColumns())
    assert described["shape"] == [2, 2]
    assert described["dtype"] == "weird"
    assert "columns" not in described
    assert "device" not in described
