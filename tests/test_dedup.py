"""Every large buffer is stored once per store, and verified on every read.

An argument that is also a local (always, for a parameter), the same array passed
to many calls, or to several names: one blob. A blob's name is never trusted for
its content: a swapped, altered or missing blob makes its checkpoint fail to load,
with the reason, and never hands wrong data to the user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy
import pytest
from conftest import BIN, run_python

import ckpt
from ckpt.blobs import Blobs
from ckpt.chunkhash import buffer_id
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


def test_a_blob_of_many_chunks_written_by_several_threads_is_the_buffer_byte_for_byte(store):
    # chunks written and hashed on several threads at once, at their offsets; a length
    # that is neither a whole chunk nor a whole piece leaves a short piece at the end
    @ckpt.ckpt(name="chunks")
    def step(data):
        return data

    data = numpy.random.default_rng(1).standard_normal((2 * 8 * 2**20 + 3 * 2**19 + 8) // 8)
    step(data)
    (blob,) = blob_files(store)
    assert blob.read_bytes() == data.tobytes()
    assert blob.name == buffer_id(memoryview(data).cast("B"))
    numpy.testing.assert_array_equal(ckpt.load("chunks").arguments["data"], data)


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


# --- reference counting: rm, clear, gc, keep, the budget ---------------------------------


def distinct_calls(store: Path, values: list[float], name: str = "calls") -> list[str]:
    @ckpt.ckpt(name=name, keep=50)
    def step(data):
        return data

    for value in values:
        step(numpy.full(SIZE // 8, value))
    return [entry.id for entry in Store(store).entries() if entry.name == name]


def test_rm_frees_a_blob_only_once_no_checkpoint_holds_it(program, store):
    run_python("-c", "import numpy, stepmod\n"
               f"for s in (1, 2): stepmod.run(numpy.ones({SIZE // 8}), s)",
               cwd=program, check=True)
    first, second = (entry.id for entry in Store(store).entries())
    assert cdip("rm", first).returncode == 0
    assert len(blob_files(store)) == 1  # the other checkpoint still holds it
    numpy.testing.assert_array_equal(ckpt.load(second).arguments["data"], numpy.ones(SIZE // 8))
    assert cdip("rm", second).returncode == 0
    assert blob_files(store) == []


def test_clear_frees_every_blob(store):
    distinct_calls(store, [1.0, 2.0])
    assert len(blob_files(store)) == 2
    assert cdip("clear", "--yes").returncode == 0
    assert blob_files(store) == []


def test_keep_frees_the_blobs_of_the_checkpoints_it_deletes(store):
    @ckpt.ckpt(name="kept", keep=2)
    def step(data):
        return data

    shared = numpy.full(SIZE // 8, 7.0)
    for value in (1.0, 2.0, 3.0):
        step(numpy.full(SIZE // 8, value), )
        step(shared)
    entries = Store(store).entries()
    assert len(entries) == 2
    means = sorted(float(ckpt.load(entry.id).arguments["data"].mean()) for entry in entries)
    assert means == [3.0, 7.0]
    assert len(blob_files(store)) == 2  # the shared one survived every deletion of a holder


def test_the_budget_counts_each_blob_once_and_frees_what_eviction_releases(program, store):
    budget = 3 * SIZE
    run_python("-c", "import numpy, stepmod\n"
               f"for s in range(8): stepmod.run(numpy.ones({SIZE // 8}), s)", cwd=program,
               check=True,
               env={"PYCKPT_KEEP": "50", "PYCKPT_MAX_BYTES": str(budget)})
    assert len(Store(store).entries()) == 8  # 8 checkpoints, one blob: well within budget
    run_python("-c", "import numpy, stepmod\n"
               f"for s in range(6): stepmod.run(numpy.full({SIZE // 8}, s))", cwd=program,
               check=True,
               env={"PYCKPT_KEEP": "50", "PYCKPT_MAX_BYTES": str(budget)})
    assert store_bytes(store) <= budget
    for entry in Store(store).entries():
        assert not entry.problem
        ckpt.load(entry.id)  # no survivor lost a blob it holds


def test_gc_removes_unused_blobs_and_keeps_those_a_write_in_progress_holds(store, tmp_path):
    distinct_calls(store, [1.0])
    blobs = Blobs(str(store))
    (held,) = blobs.ids()
    stray = os.urandom(BLOB_MIN)
    stray_id = buffer_id(memoryview(stray))
    blobs.put(stray_id, stray)  # left by an interrupted save: nothing holds it
    # a save under way in a live process: its temporary names a blob it is writing
    @ckpt.ckpt(name="writing")
    def step(data):
        return data

    writing = Store(store)
    records = [ckpt.values.pickle_value(numpy.full(SIZE // 8, 9.0))]
    temporary, _, _ = writing.stage_part({"part": "call"}, {}, records)
    (in_progress,) = set(blobs.ids()) - {held, stray_id}
    result = cdip("gc")
    assert result.returncode == 0, result.stderr
    assert "freed 1.0 MiB of unused buffers" in result.stdout
    assert set(blobs.ids()) == {held, in_progress}
    os.unlink(temporary)


def test_a_blob_removed_while_a_writer_reused_it_is_put_back_when_the_part_is_published(store):
    @ckpt.ckpt(name="first")
    def step(data):
        return data

    data = numpy.full(SIZE // 8, 5.0)
    step(data)
    blobs = Blobs(str(store))
    (blob,) = blobs.ids()
    writer = Store(store)
    records = [ckpt.values.pickle_value(None), ckpt.values.pickle_value(data)]
    (entry,) = Store(store).entries()
    summary = {**_summary_of(entry), "id": "aaaaaaaaaaaa"}
    temporary, _, _ = writer.stage_part(summary, _detail_of(entry), records)
    # a remover that listed the store before this write began: it sees no holder at all
    assert blobs.remove([blob], lambda: set()) == SIZE
    Store(store).remove(entry)
    writer.publish(temporary, writer.filename(entry.key, entry.stamp, "aaaaaaaaaaaa", ".call"))
    assert list(blobs.ids()) == [blob]
    numpy.testing.assert_array_equal(ckpt.load("aaaaaaaaaaaa").arguments["data"], data)


def test_a_remover_puts_back_what_a_part_published_meanwhile_holds(store):
    distinct_calls(store, [1.0])
    blobs = Blobs(str(store))
    (blob,) = blobs.ids()
    assert blobs.remove([blob], lambda: {blob}) == 0  # the part appeared after the first look
    assert list(blobs.ids()) == [blob]
    ckpt.load("calls")


def _summary_of(entry):
    from ckpt.fileformat import read_headers

    return read_headers(entry.call_path, None)[0]


def _detail_of(entry):
    from ckpt.fileformat import read_headers

    return read_headers(entry.call_path, None)[1]


# --- loading: mapped in place, verified first, never changing the store --------------


def test_a_loaded_array_is_writable_and_writing_it_leaves_the_blob_as_it_was(store):
    old, _, first, _ = saved_pair(store)
    before = first.read_bytes()
    data = ckpt.load(old).arguments["data"]
    assert data.flags.writeable
    data[:] = -1.0
    assert first.read_bytes() == before
    assert ckpt.load(old).arguments["data"][0] == 1.0


def test_a_blob_others_could_write_is_copied_and_checked_all_the_same(store):
    old, _, first, _ = saved_pair(store)
    first.chmod(0o664)  # writable by the group: never used in place
    numpy.testing.assert_array_equal(ckpt.load(old).arguments["data"], numpy.full(SIZE // 8, 1.0))
    data = bytearray(first.read_bytes())
    data[-1] ^= 0x40
    first.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="do not hash to the id"):
        ckpt.load(old)


def test_info_counts_a_shared_buffer_once_for_the_store(program, store):
    run_python("-c", "import numpy, stepmod\n"
               f"for s in range(3): stepmod.run(numpy.ones({SIZE // 8}), s)",
               cwd=program, check=True)
    listed = cdip("info")
    header = listed.stdout.splitlines()[0]
    assert "3 checkpoint(s), 4.0 MiB)" in header or "3 checkpoint(s), 4.1 MiB)" in header, header


def test_savers_reusing_a_blob_while_clear_removes_every_holder_lose_nothing(program, store):
    """Two processes save one array over and over while `cdip clear` runs in a loop.

    Each clear leaves the blob held by no published part, while a saver may be
    between claiming it and publishing its part: no save fails, and every part
    published loads. (Each mechanism that makes this so is tested on its own
    above; this runs them together, for real.)
    """
    saver = ("import time, numpy, stepmod, ckpt.store\n"
             "publish = ckpt.store.Store.publish\n"  # a slow rename: a wide window to race
             "def slowly(*args):\n"
             "    time.sleep(0.03)\n"
             "    publish(*args)\n"
             "ckpt.store.Store.publish = slowly\n"
             f"data = numpy.ones({SIZE // 8})\n"
             "for scale in range(30): stepmod.run(data, scale)\n")
    env = {**os.environ, "PYCKPT_KEEP": "100"}
    savers = [subprocess.Popen([sys.executable, "-c", saver], cwd=program, env=env,
                               stderr=subprocess.PIPE, text=True) for _ in range(2)]
    clears = 0
    while any(process.poll() is None for process in savers):
        assert cdip("clear", "--yes").returncode == 0
        clears += 1
    for process in savers:
        _, errors = process.communicate()
        assert process.returncode == 0 and "CkptWarning" not in errors, errors  # no save failed
    assert clears >= 3
    for entry in Store(store).entries():
        assert not entry.problem, entry.problem
        numpy.testing.assert_array_equal(ckpt.load(entry.id).arguments["data"],
                                         numpy.ones(SIZE // 8))


def test_loads_past_the_mapping_limit_are_read_instead_and_mappings_are_let_go(store,
                                                                             monkeypatch):
    import gc

    from ckpt import blobread

    old, _, _, _ = saved_pair(store)
    before = blobread._mapped[0]
    loaded = [ckpt.load(old).arguments["data"] for _ in range(3)]
    monkeypatch.setattr(blobread, "_MAX_MAPPED", 0)  # no descriptor to spare: read
    loaded.append(ckpt.load(old).arguments["data"])
    for data in loaded:
        numpy.testing.assert_array_equal(data, numpy.full(SIZE // 8, 1.0))
    del loaded, data
    gc.collect()
    assert blobread._mapped[0] == before


def test_a_blob_a_dead_remover_set_aside_is_put_back_if_held_and_removed_if_not(store,
                                                                               monkeypatch):
    distinct_calls(store, [1.0, 2.0])
    blobs = Blobs(str(store))
    held, unheld = sorted(blobs.ids())
    Store(store).remove(next(e for e in Store(store).entries()
                             if e.blobs[0][0] == unheld))
    assert sorted(blobs.ids()) == [held]
    stray = os.urandom(BLOB_MIN)
    stray_id = buffer_id(memoryview(stray))
    blobs.put(stray_id, stray)
    for blob in (held, stray_id):  # a remover set both aside, then died
        path = store / "blobs" / blob[:16] / blob
        os.rename(path, path.with_name(f".gone-{blob}-0123"))
    assert blobs.remove([], lambda: {held}) == 0  # a live remover's, maybe: left alone
    import ckpt.blobs

    monkeypatch.setattr(ckpt.blobs, "_ABANDONED", -1.0)  # as if a minute had passed
    assert blobs.remove([], lambda: {held}) == BLOB_MIN  # the stray goes, held comes back
    assert sorted(blobs.ids()) == [held]
    ckpt.load(next(e.id for e in Store(store).entries()))


def test_many_blobs_of_one_value_are_checked_together_and_each_one_counts(store):
    @ckpt.ckpt(name="model")
    def step(weights):
        return weights

    weights = {f"layer{index}": numpy.full(BLOB_MIN // 8 * 2, float(index)) for index in range(5)}
    step(weights)
    loaded = ckpt.load("model").arguments["weights"]
    for name, value in weights.items():
        numpy.testing.assert_array_equal(loaded[name], value)
    victim = blob_files(store)[3]
    data = bytearray(victim.read_bytes())
    data[100] ^= 1
    victim.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="do not hash to the id"):
        ckpt.load("model")


def test_many_buffers_of_one_value_are_stored_side_by_side_each_once(store):
    # a model's parameters: many buffers of a few MiB, stored by a pool of threads
    arrays = [numpy.full(BLOB_MIN // 8, float(index)) for index in range(12)]
    arrays.append(arrays[3].copy())  # the same bytes twice: one blob

    @ckpt.ckpt(name="params")
    def keep(params):
        return len(params)

    keep(arrays)
    assert len(blob_files(store)) == 12
    loaded = ckpt.load("params").arguments["params"]
    for ours, theirs in zip(loaded, arrays):
        numpy.testing.assert_array_equal(ours, theirs)


def test_a_failure_storing_one_of_many_buffers_leaves_no_blob_being_written(store, monkeypatch):
    import ckpt.blobwrite

    real = ckpt.blobwrite._store

    def failing(view, blobs, fsync):
        if view.nbytes and bytes(view[:8]) == numpy.float64(5.0).tobytes():
            raise OSError(28, "No space left on device")
        return real(view, blobs, fsync)

    monkeypatch.setattr(ckpt.blobwrite, "_store", failing)

    @ckpt.ckpt(name="params", active=False)
    def step(params):
        raise ValueError("loss is nan")

    arrays = [numpy.full(BLOB_MIN // 8, float(index)) for index in range(8)]
    with pytest.raises(ValueError, match="loss is nan"), pytest.warns(ckpt.CkptWarning,
                                                                      match="No space"):
        step(arrays)
    assert not [path for path in (store / "blobs").rglob(".tmp-*")]  # every writer finished
    assert ckpt.checkpoints() == []


@pytest.mark.parametrize("raised", [KeyboardInterrupt(), OSError(28, "No space left on device")],
                         ids=["ctrl-c", "disk-full"])
def test_a_failure_storing_one_of_many_buffers_stops_the_others_at_once(store, monkeypatch,
                                                                         raised):
    # Ctrl-C reaches the user without waiting for every other parameter to be written
    import time

    import ckpt.blobwrite

    real, stored = ckpt.blobwrite._store, []

    def failing(view, blobs, fsync):
        if bytes(view[:8]) == numpy.float64(0.0).tobytes():
            raise raised
        time.sleep(0.05)  # a slow disk
        stored.append(view.nbytes)
        return real(view, blobs, fsync)

    monkeypatch.setattr(ckpt.blobwrite, "_store", failing)

    @ckpt.ckpt(name="params", active=False)
    def step(params):
        raise ValueError("loss is nan")

    arrays = [numpy.full(BLOB_MIN // 8, float(index)) for index in range(40)]
    expected = type(raised) if isinstance(raised, KeyboardInterrupt) else ValueError
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ckpt.CkptWarning)  # the full disk's
        with pytest.raises(expected):
            step(arrays)
    assert len(stored) < 10  # those already being written when it failed, not all 39
    assert not [path for path in (store / "blobs").rglob(".tmp-*")]
    assert ckpt.checkpoints() == []


def test_two_buffers_of_equal_bytes_stored_side_by_side_count_once(store, monkeypatch):
    # both new to the store and written at once: the part adds one blob, and says so
    import threading

    from ckpt.blobwrite import BlobPlan
    from ckpt.fileformat import Record

    both_looked = threading.Barrier(2)
    looked = Blobs.family_exists

    def family_exists(self, family):
        found = looked(self, family)
        try:
            both_looked.wait(timeout=2)  # neither writes before the other looked
        except threading.BrokenBarrierError:
            pass  # one core: one after the other
        return found

    monkeypatch.setattr(Blobs, "family_exists", family_exists)
    first = numpy.full(BLOB_MIN // 8, 7.0)
    plan = BlobPlan([Record(b"", [memoryview(first), memoryview(first.copy())])],
                    Blobs(str(store)))
    assert len(plan.refs) == 1
    assert len(blob_files(store)) == 1
    assert plan.written == BLOB_MIN  # the bytes the store grew by
