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


@pytest.fixture
def golden_store(tmp_path, monkeypatch) -> Path:
    store = tmp_path / "golden"
    shutil.copytree(DATA / "format-1" / "store", store)
    key = tmp_path / "key"
    shutil.copy(DATA / "format-1" / "key", key)
    key.chmod(0o600)  # git does not keep file modes: the key must be private to be used
    monkeypatch.setenv("PYCKPT_KEY_FILE", str(key))
    monkeypatch.setenv("PYCKPT_DIR", str(store))
    return store


def test_format_1_loads(golden_store):
    checkpoint = ckpt.load("golden")
    assert checkpoint.trigger == "error"
    numpy.testing.assert_array_equal(checkpoint.arguments["values"], numpy.arange(6.0))
    numpy.testing.assert_array_equal(checkpoint.arguments["weights"], numpy.full(6, 0.5))
    assert checkpoint.arguments["label"] == "v1"
    assert checkpoint.locals["total"] == 7.5
    assert checkpoint.exception.message == "v1: 7.5"
    with pytest.raises(ValueError, match=r"v1: 7\.5"):
        checkpoint.call()  # the function saved by value (it was typed into `python -c`)


def test_format_1_lists_and_shows(golden_store):
    env = {**os.environ}
    listed = subprocess.run([str(BIN / "cdip"), "info", "--json"], capture_output=True,
                            text=True, env=env, check=True)
    (row,) = json.loads(listed.stdout)
    assert row["name"] == "golden" and row["problem"] is None
    shown = subprocess.run([str(BIN / "cdip"), "info", row["id"]], capture_output=True,
                           text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "ValueError: v1: 7.5" in shown.stdout
