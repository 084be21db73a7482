"""Checkpoints written by every released format version still load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy
import pytest
from conftest import BIN

import ckpt

DATA = Path(__file__).parent / "data"


@pytest.fixture(params=[1, 2, 3, 4], ids=["format-1", "format-2", "format-3", "format-4"])
def golden(request, tmp_path, monkeypatch) -> str:
    """A copy of one version's golden store, in use; returns the label it was saved with."""
    store = tmp_path / "golden"
    shutil.copytree(DATA / f"format-{request.param}" / "store", store)
    key = tmp_path / "key"
    shutil.copy(DATA / f"format-{request.param}" / "key", key)
    key.chmod(0o600)  # git does not keep file modes: the key must be private to be used
    monkeypatch.setenv("PYCKPT_KEY_FILE", str(key))
    monkeypatch.setenv("PYCKPT_DIR", str(store))
    return f"v{request.param}"


def test_every_format_loads(golden):
    checkpoint = ckpt.load("golden")
    assert checkpoint.trigger == "error"
    numpy.testing.assert_array_equal(checkpoint.arguments["values"], numpy.arange(6.0))
    numpy.testing.assert_array_equal(checkpoint.arguments["weights"], numpy.full(6, 0.5))
    assert checkpoint.arguments["label"] == golden
    assert checkpoint.locals["total"] == 7.5
    assert checkpoint.exception.message == f"{golden}: 7.5"
    with pytest.raises(ValueError, match=rf"{golden}: 7\.5"):
        checkpoint.call()  # the function saved by value (it was typed into `python -c`)


def test_every_format_lists_and_shows(golden):
    env = {**os.environ}
    listed = subprocess.run([str(BIN / "cdip"), "info", "--json"], capture_output=True,
                            text=True, env=env, check=True)
    row = next(row for row in json.loads(listed.stdout) if row["name"] == "golden")
    assert row["problem"] is None
    shown = subprocess.run([str(BIN / "cdip"), "info", row["id"]], capture_output=True,
                           text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"ValueError: {golden}: 7.5" in shown.stdout


def test_format_4_loads_a_buffer_stored_as_a_blob(tmp_path, monkeypatch):
    store = tmp_path / "golden"
    shutil.copytree(DATA / "format-4" / "store", store)
    key = tmp_path / "key"
    shutil.copy(DATA / "format-4" / "key", key)
    key.chmod(0o600)
    monkeypatch.setenv("PYCKPT_KEY_FILE", str(key))
    monkeypatch.setenv("PYCKPT_DIR", str(store))
    checkpoint = ckpt.load("golden-blob")
    numpy.testing.assert_array_equal(checkpoint.arguments["big"], numpy.arange(131072.0))
    numpy.testing.assert_array_equal(checkpoint.locals["big"], numpy.arange(131072.0))
    assert checkpoint.exception.message == "v4: 8589869056.0"
