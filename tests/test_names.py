"""Names on the command line: a trailing part of a name finds it; a near miss gets a hint."""

from __future__ import annotations

import json

import pytest
from test_replay import cdip

import ckpt
from ckpt.names import short_names


class ModelStep:
    @ckpt.ckpt(active=False)
    def fit(self, rows):
        return sum(rows) / len(rows)

    @ckpt.ckpt(active=False)
    def predict(self, row):
        return 1 / row


class Scaler:
    @ckpt.ckpt(active=False)
    def fit(self, rows):
        return max(rows) / min(rows)


@pytest.fixture
def saved(store):
    with pytest.raises(ZeroDivisionError):
        ModelStep().fit([])
    with pytest.raises(ZeroDivisionError):
        ModelStep().predict(0)
    return store


def name_of(result) -> str:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["name"]


def test_a_method_is_found_by_its_own_name(saved):
    assert name_of(cdip("info", "fit", "--json")) == "ModelStep.fit"
    assert name_of(cdip("info", "ModelStep.fit", "--json")) == "ModelStep.fit"
    replayed = cdip("run", "predict", "--mode", "run")
    assert replayed.returncode == 1, replayed.stderr
    assert "ZeroDivisionError" in replayed.stdout


def test_a_name_shared_by_two_functions_is_refused_with_both(saved):
    with pytest.raises(ZeroDivisionError):
        Scaler().fit([0])
    result = cdip("info", "fit")
    assert result.returncode == 2
    assert "'ModelStep.fit'" in result.stderr and "'Scaler.fit'" in result.stderr
    assert "Traceback" not in result.stderr
    assert name_of(cdip("info", "Scaler.fit", "--json")) == "Scaler.fit"


@pytest.mark.parametrize(("typed", "meant"), [("fti", "ModelStep.fit"),
                                              ("ModelStep.predcit", "ModelStep.predict"),
                                              ("Predict", "ModelStep.predict")])
def test_an_unknown_name_gets_did_you_mean(saved, typed, meant):
    result = cdip("run", typed, "--mode", "run")
    assert result.returncode == 2
    assert f"no checkpoint named {typed!r}" in result.stderr
    assert f"did you mean {meant!r}" in result.stderr


def test_a_name_like_nothing_gets_no_suggestion(saved):
    result = cdip("info", "zzzzzz")
    assert result.returncode == 2
    assert "did you mean" not in result.stderr
    assert "`cdip info` lists the names" in result.stderr


def test_the_short_names_of_a_node_id():
    assert short_names("tests/test_x.py::TestThing::test_method[1.5]") == {
        "TestThing::test_method[1.5]", "TestThing::test_method", "TestThing.test_method[1.5]",
        "TestThing.test_method", "test_method[1.5]", "test_method",
        "tests/test_x.py::TestThing::test_method"}
    assert short_names("ModelStep.fit") == {"fit"}
    assert short_names("summarise") == set()
