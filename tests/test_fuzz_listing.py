"""Fuzzing the listing path: whatever bytes or names are in the store, listing never
raises, never hangs, and never shows anything of a file that does not verify."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ckpt
from ckpt.checkpoint import verify_checkpoint
from ckpt.display import entry_json, listing
from ckpt.errors import CkptError
from ckpt.store import Store

FUZZ = settings(max_examples=1500, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, str, bytes, bytes]:
    """One real error checkpoint: its key, its file names' stem and both parts' bytes."""
    directory = tmp_path_factory.mktemp("fuzz-source")
    key = directory / "key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    saved = dict(os.environ)
    os.environ.update(PYCKPT_DIR=str(directory / "store"), PYCKPT_KEY_FILE=str(key))
    try:

        @ckpt.ckpt(name="fuzzed")
        def step(values, label):
            raise ValueError(label)

        with pytest.raises(ValueError):
            step(list(range(10)), "boom")
        (entry,) = ckpt.checkpoints()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    stem = os.path.basename(entry.call_path)[: -len(".call")]
    return key, stem, Path(entry.call_path).read_bytes(), Path(entry.error_path).read_bytes()


@pytest.fixture
def original(source, monkeypatch) -> tuple[str, bytes, bytes]:
    """The checkpoint's stem and parts, its key in use (so the untouched one verifies)."""
    monkeypatch.setenv("PYCKPT_KEY_FILE", str(source[0]))
    return source[1:]


def test_the_untouched_checkpoint_verifies(tmp_path, original):
    stem, call, error = original
    (tmp_path / f"{stem}.call").write_bytes(call)
    (tmp_path / f"{stem}.error").write_bytes(error)
    (entry,) = _list_everything(tmp_path)
    assert entry.problem is None and entry.name == "fuzzed"


def _mutate(data: bytes, edits: list[tuple[int, int, int]], cut: int | None) -> bytes:
    mutated = bytearray(data)
    for kind, position, value in edits:
        at = position % (len(mutated) + 1)
        if kind == 0 and at < len(mutated):
            mutated[at] ^= value or 1  # a flipped bit or byte
        elif kind == 1:
            mutated[at:at] = bytes([value])  # an inserted byte
        elif at < len(mutated):
            del mutated[at]  # a dropped byte
    return bytes(mutated[:cut] if cut is not None else mutated)


def _list_everything(store: Path) -> list[ckpt.checkpoint.Entry]:
    entries = Store(store).entries()
    listing(entries)
    for entry in entries:
        entry_json(entry)
    return entries


edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4096), st.integers(0, 255)),
                 min_size=1, max_size=4)
header_edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 600), st.integers(0, 255)),
                        min_size=1, max_size=3)


@FUZZ
@given(call_edits=header_edits | edits, error_edits=st.none() | edits,
       cut=st.none() | st.integers(0, 4096))
def test_damaged_parts_are_listed_broken_never_trusted(tmp_path, original, call_edits,
                                                      error_edits, cut):
    stem, call, error = original
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    for leftover in store.iterdir():
        leftover.unlink()
    (store / f"{stem}.call").write_bytes(_mutate(call, call_edits, cut))
    mutated_error = _mutate(error, error_edits, None) if error_edits else error
    (store / f"{stem}.error").write_bytes(mutated_error)
    (entry,) = _list_everything(store)
    if entry.problem is None:
        # listing verifies the summaries (all it shows): they are the signed ones, exactly
        assert entry.name == "fuzzed" and entry.error_summary.exception.message == "boom"
        assert entry.summary.id == entry.error_summary.id == stem.rpartition("~")[2]
        changed = (store / f"{stem}.call").read_bytes() != call or mutated_error != error
        if changed:  # the change is past the summaries: loading refuses it, unpickling nothing
            with pytest.raises(CkptError):
                verify_checkpoint(entry)
    else:
        assert entry.summary is None and entry.error_summary is None
        assert entry.name != "fuzzed"  # nothing from its contents


names = st.text(alphabet="abc~.0123456789-_\x1b\n", min_size=1, max_size=40)


@FUZZ
@given(filenames=st.lists(names, min_size=1, max_size=5), body=st.binary(max_size=64))
def test_any_file_names_in_the_store_are_listed_or_ignored(tmp_path, original, filenames,
                                                          body):
    store = tmp_path / "names"
    store.mkdir(exist_ok=True)
    for leftover in store.iterdir():
        leftover.unlink()
    for filename in filenames:
        if filename not in (".", "..") and "/" not in filename:
            (store / filename).write_bytes(body)
    for entry in _list_everything(store):
        assert entry.problem is not None and entry.summary is None
