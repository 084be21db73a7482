"""The on-disk format: round-trips, and corruption always detected before unpickling."""

from __future__ import annotations

import io
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckpt.errors import CorruptCheckpointError
from ckpt.fileformat import (
    _BUFFER,
    ALIGN,
    BLOB_MIN,
    PartWriter,
    read_headers,
    read_part,
    read_summary,
    verify_part,
)
from ckpt.values import pickle_value, unpickle_value

KEY = b"k" * 32
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
python_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    | st.binary(max_size=300),
    lambda children: st.lists(children, max_size=4) | st.tuples(children, children)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=16,
)


def write(path, summary, detail, values) -> bytes:
    with open(path, "wb") as stream:
        writer = PartWriter(stream, KEY)
        writer.write_header(summary, detail)
        for value in values:
            pickled = pickle_value(value)
            writer.write_record(pickled.inband, pickled.buffers)
        return writer.finish()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(summary=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
       detail=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
       values=st.lists(python_values, max_size=5))
def test_random_structures_round_trip(tmp_path, summary, detail, values):
    path = tmp_path / "part"
    tag = write(path, summary, detail, values)
    part = read_part(str(path), KEY)
    assert part.tag == tag
    assert part.summary == summary and part.detail == detail
    assert [unpickle_value(r.inband, r.buffers) for r in part.records] == values
    assert read_summary(str(path), KEY) == summary
    assert read_headers(str(path), KEY) == (summary, detail)


def test_buffers_are_aligned_and_round_trip_numpy(tmp_path):
    numpy = pytest.importorskip("numpy")
    arrays = [numpy.arange(1000, dtype=numpy.float64), numpy.ones((3, 5), order="F"),
              numpy.arange(7, dtype=numpy.int8)]
    path = tmp_path / "part"
    with open(path, "wb") as stream:
        writer = PartWriter(stream, KEY)
        writer.write_header({}, {})
        for array in arrays:
            pickled = pickle_value(array)
            assert pickled.buffers, "numpy arrays must travel out of band"
            writer.write_record(pickled.inband, pickled.buffers)
        writer.finish()
    data = path.read_bytes()
    needle = arrays[0].tobytes()
    assert data.index(needle) % ALIGN == 0
    part = read_part(str(path), KEY)
    loaded = [unpickle_value(r.inband, r.buffers) for r in part.records]
    for original, copy in zip(arrays, loaded):
        numpy.testing.assert_array_equal(original, copy)
        assert copy.flags.writeable and copy.flags.aligned
    assert loaded[1].flags.f_contiguous


@pytest.fixture(scope="module")
def large_part(tmp_path_factory):
    """A part holding a 40 MiB array: five 8 MiB chunks, hashed by the thread pool."""
    numpy = pytest.importorskip("numpy")
    array = numpy.random.default_rng(1).integers(0, 255, 40 << 20, dtype=numpy.uint8)
    path = tmp_path_factory.mktemp("large") / "part"
    write(path, {"s": 1}, {}, [array])
    return path, array


def test_large_buffers_round_trip_through_the_chunk_hashes(large_part):
    numpy = pytest.importorskip("numpy")
    path, array = large_part
    part = read_part(str(path), KEY)
    (record,) = part.records
    numpy.testing.assert_array_equal(unpickle_value(record.inband, record.buffers), array)
    assert verify_part(str(path), KEY) == part.tag


@pytest.mark.parametrize("damage", ["flip a bit in the fourth chunk", "swap two chunks"])
def test_damage_inside_a_large_buffer_is_refused(large_part, tmp_path, damage):
    path, array = large_part
    data = bytearray(path.read_bytes())
    start = data.index(array[:64].tobytes())
    chunk = 8 << 20
    if damage.startswith("flip"):
        data[start + 3 * chunk + 12345] ^= 0x10
    else:
        first = bytes(data[start : start + chunk])
        data[start : start + chunk] = data[start + chunk : start + 2 * chunk]
        data[start + chunk : start + 2 * chunk] = first
    damaged = tmp_path / "damaged"
    damaged.write_bytes(bytes(data))
    for check in (read_part, verify_part):
        with pytest.raises(CorruptCheckpointError, match="does not verify"):
            check(str(damaged), KEY)


@pytest.fixture(scope="module")
def valid_part(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("valid") / "part"
    write(path, {"id": "x"}, {"a": [1, 2]}, [[1, 2, 3], b"x" * 200, "text"])
    return path.read_bytes()


def _refused(tmp_path, data: bytes) -> None:
    path = tmp_path / "damaged"
    path.write_bytes(data)
    loads = []
    original = pickle.loads
    pickle.loads = lambda *a, **k: loads.append(1) or original(*a, **k)  # type: ignore
    try:
        with pytest.raises(CorruptCheckpointError):
            read_part(str(path), KEY)
    finally:
        pickle.loads = original  # type: ignore
    assert not loads


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_bit_flip_is_detected(tmp_path, valid_part, data):
    position = data.draw(st.integers(0, len(valid_part) - 1))
    bit = data.draw(st.integers(0, 7))
    damaged = bytearray(valid_part)
    damaged[position] ^= 1 << bit
    _refused(tmp_path, bytes(damaged))


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_truncation_or_extension_is_detected(tmp_path, valid_part, data):
    cut = data.draw(st.integers(0, len(valid_part) - 1))
    _refused(tmp_path, valid_part[:cut])
    _refused(tmp_path, valid_part + data.draw(st.binary(min_size=1, max_size=20)))


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=400))
def test_garbage_is_refused(tmp_path, garbage):
    _refused(tmp_path, garbage)


def test_another_key_is_refused(tmp_path, valid_part):
    path = tmp_path / "part"
    path.write_bytes(valid_part)
    for read in (read_part, read_summary, read_headers):
        with pytest.raises(CorruptCheckpointError, match="signed under another key") as caught:
            read(str(path), b"o" * 32)
        assert not caught.value.dead  # another key's file is not for gc to remove


def test_a_newer_format_version_is_named(tmp_path, valid_part):
    path = tmp_path / "part"
    path.write_bytes(valid_part[:7] + bytes([99]) + valid_part[8:])
    with pytest.raises(CorruptCheckpointError, match="format 99"):
        read_summary(str(path), KEY)


def test_writer_streams_without_buffering_everything():
    stream = io.BytesIO()
    writer = PartWriter(stream, KEY)
    writer.write_header({"a": 1}, {})
    assert writer.size == len(stream.getvalue())


@pytest.mark.parametrize(("cores", "writing", "reading"), [(None, 1, 1), (1, 1, 1), (2, 1, 2),
                                                           (3, 2, 3), (16, 4, 8)])
def test_hashing_leaves_the_writer_a_core(monkeypatch, cores, writing, reading):
    import ckpt.chunkhash as chunkhash

    monkeypatch.setattr(chunkhash.os, "cpu_count", lambda: cores)
    assert chunkhash.hash_workers(writing=True) == writing
    assert chunkhash.hash_workers(writing=False) == reading


# --- format 4: buffers stored as blobs ------------------------------------------------


def write_with_blobs(path, values) -> tuple[bytes, list]:
    from ckpt.blobs import Blobs
    from ckpt.fileformat import write_stream

    records = [pickle_value(value) for value in values]
    with open(path, "wb") as stream:
        tag, _, plan = write_stream(stream, KEY, {"part": "call"}, {}, records,
                                    Blobs(str(path.parent)))
    return tag, plan.refs


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
@given(sizes=st.lists(st.sampled_from([0, 1000, BLOB_MIN - 1, BLOB_MIN, BLOB_MIN + 5]),
                      max_size=4),
       repeat=st.booleans())
def test_blob_buffers_round_trip_and_are_listed_once(tmp_path_factory, sizes, repeat):
    import numpy

    path = tmp_path_factory.mktemp("store") / "part"
    arrays = [numpy.full(size, index % 251, dtype=numpy.uint8)
              for index, size in enumerate(sizes)]
    values = arrays + (arrays if repeat else [])
    tag, refs = write_with_blobs(path, values)
    assert sorted(length for _, length in refs) == sorted(
        size for size in sizes if size >= BLOB_MIN)
    part = read_part(str(path), KEY)
    assert part.tag == tag and part.summary.get("blobs", []) == [list(ref) for ref in refs]
    for record, value in zip(part.records, values):
        numpy.testing.assert_array_equal(unpickle_value(record.inband, record.buffers), value)


def test_a_record_pointing_at_another_listed_blob_does_not_verify(tmp_path):
    import numpy

    path = tmp_path / "part"
    write_with_blobs(path, [numpy.zeros(BLOB_MIN, numpy.uint8), numpy.ones(BLOB_MIN, numpy.uint8)])
    data = bytearray(path.read_bytes())
    first = data.index(_BUFFER.pack(BLOB_MIN, 1))
    second = data.index(_BUFFER.pack(BLOB_MIN, 2))
    data[first : first + _BUFFER.size] = _BUFFER.pack(BLOB_MIN, 2)
    data[second : second + _BUFFER.size] = _BUFFER.pack(BLOB_MIN, 1)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="does not verify"):
        read_part(str(path), KEY)
    data[first : first + _BUFFER.size] = _BUFFER.pack(BLOB_MIN, 3)  # listed nowhere
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpointError, match="not one its header lists"):
        read_part(str(path), KEY)
