"""Every large buffer is stored once per store, and verified on every read.

An argument that is also a local (always, for a parameter), the same array passed
to many calls, or to several names: one blob. A blob's name is never trusted for
its content: a swapped, altered or missing blob makes its checkpoint fail to load,
with the reason, and never hands wrong data to the user.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import numpy
import pytest
from conftest import BIN, run_python

import ckpt
from ckpt.blobs import Blobs
from ckpt.errors import CorruptCheckpointError
from ckpt.fileformat import BLOB_MIN
from ckpt.store import Store

CDIP = str(BIN / "cdip")
SIZE = 4 * BLOB_MIN  # a "large" argument, small enough for a test


def cdip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CDIP, *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, cwd=cwd)


def store_bytes(store: Path) -> int:
    return sum(path.stat().st_size for path in store.rglob("*") if path.is_file())


def blob_files(store: Path) -> list[Path]:
    return sorted(path for path in (store / "blobs").rglob("*")
                  if path.is_file() and not path.name.startswith("."))


STEP = """
import numpy, ckpt

@ckpt.ckpt(name="step", active=False)
def step(data, scale):
    total = float(data.sum()) * scale
    raise ValueError(f"bad total {total}")

@ckpt.ckpt(name="other", active=False)
def other(data):
    raise KeyError("other")

def run(data, scale=1.0):
    try:
        step(data, scale)
    except ValueError:
        pass
"""


@pytest.fixture
def program(tmp_path: Path) -> Path:
    (tmp_path / "stepmod.py").write_text(STEP)
    return tmp_path


def test_an_argument_that_is_also_a_local_is_written_once(program, store):
    # before blobs the call part and the error part each held the array: 2.0x
    run_python("-c", textwrap.dedent(f"""
        import numpy, stepmod
        stepmod.run(numpy.arange({SIZE // 8}, dtype=numpy.float64))
        """), cwd=program, check=True)
    assert len(blob_files(store)) == 1
    assert store_bytes(store) <= 1.05 * SIZE
    checkpoint = ckpt.load("step")
    expected = numpy.arange(SIZE // 8, dtype=numpy.float64)
    numpy.testing.assert_array_equal(checkpoint.arguments["data"], expected)
    numpy.testing.assert_array_equal(checkpoint.locals["data"], expected)
    # one blob, two values: changing the argument leaves the saved local as it was
    checkpoint.arguments["data"][0] = -1.0
    assert checkpoint.locals["data"][0] == 0.0


def test_ten_calls_and_another_name_with_one_array_write_it_once(program, store):
    run_python("-c", textwrap.dedent(f"""
        import numpy, stepmod
        reference = numpy.ones({SIZE // 8})
        for scale in range(10):
            stepmod.run(reference, scale)
        try:
            stepmod.other(reference)
        except KeyError:
            pass
        """), cwd=program, env={"PYCKPT_KEEP": "20"}, check=True)
    assert len(Store(store).entries()) == 11
    (blob,) = blob_files(store)
    assert blob.stat().st_size == SIZE
    assert store_bytes(store) <= 1.05 * SIZE
    numpy.testing.assert_array_equal(ckpt.load("other").arguments["data"], numpy.ones(SIZE // 8))


def test_an_array_changed_in_place_between_calls_is_stored_as_it_was_each_time(store):
    @ckpt.ckpt(name="mutated")
    def step(data):
        return float(data[0])

    data = numpy.zeros(SIZE // 8)
    for value in (1.0, 2.0, 3.0):
        data[:] = value
        step(data)
    entries = Store(store).entries()
    seen = [float(ckpt.load(entry.id).arguments["data"].mean()) for entry in entries]
    assert seen == [1.0, 2.0, 3.0]
    assert len(blob_files(store)) == 3


def test_small_buffers_stay_in_the_part(store):
    @ckpt.ckpt(name="small")
    def step(data):
        return data

    step(numpy.zeros(BLOB_MIN // 8 - 1))
    assert not (store / "blobs").exists()
    assert ckpt.load("small").arguments["data"].shape == (BLOB_MIN // 8 - 1,)


def saved_pair(store: Path) -> tuple[str, str, Path, Path]:
    """Two checkpoints of different arrays of one size: their ids and blobs."""
    @ckpt.ckpt(name="victim")
    def step(data):
        return data

    step(numpy.full(SIZE // 8, 1.0))
    first = blob_files(store)
    step(numpy.full(SIZE // 8, 2.0))
    (second,) = set(blob_files(store)) - set(first)
    ids = [entry.id for entry in Store(store).entries()]
    return ids[0], ids[1], first[0], second


def test_a_swapped_blob_breaks_its_checkpoint_and_never_loads_wrong_data(program, store):
    old, _, first, second = saved_pair(store)
    os.replace(second, first)  # the bytes of another array, under the first one's name
    with pytest.raises(CorruptCheckpointError, match="altered or replaced"):
        ckpt.load(old)
    replayed = cdip("run", old, "--mode", "run", cwd=program)
    assert replayed.returncode == 2
    assert "altered or replaced" in replayed.stderr
    assert "Traceback" not in replayed.stderr


def test_an_altered_or_truncated_blob_breaks_its_checkpoint(store):
    old, _, first, _ = saved_pair(store)
    data = bytearray(first.read_bytes())
    data[SIZE // 2] ^= 1
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="do not hash to the id"):
        ckpt.load(old)
    first.write_bytes(bytes(data[:-1]))
    with pytest.raises(CorruptCheckpointError, match="altered or replaced"):
        ckpt.load(old)


def test_a_missing_blob_is_listed_as_broken_with_the_reason(store):
    old, new, first, _ = saved_pair(store)
    first.unlink()
    listed = subprocess.run([CDIP, "info"], capture_output=True, text=True, timeout=60)
    line = next(line for line in listed.stdout.splitlines() if old in line)
    assert "missing" in line
    with pytest.raises(CorruptCheckpointError, match="missing"):
        ckpt.load(old)
    assert ckpt.load(new).arguments["data"][0] == 2.0


def test_a_blob_planted_as_a_link_is_not_followed(store, tmp_path):
    old, _, first, _ = saved_pair(store)
    elsewhere = tmp_path / "elsewhere"
    os.replace(first, elsewhere)
    first.symlink_to(elsewhere)
    with pytest.raises(CorruptCheckpointError, match="missing"):
        ckpt.load(old)


def test_concurrent_writers_of_one_blob_both_succeed(store):
    blobs = Blobs(str(store))
    data = os.urandom(BLOB_MIN)
    from ckpt.fileformat import buffer_id

    blob = buffer_id(memoryview(data))
    import threading

    written = []
    threads = [threading.Thread(target=lambda: written.append(blobs.put(blob, data)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(written) >= BLOB_MIN  # at least one wrote it; the rest found it or wrote it too
    assert list(blobs.ids()) == [blob]
    assert blob_files(store)[0].read_bytes() == data
    assert not list(blobs.temporaries())
