"""pandas frames, pyarrow tables and polars frames go out of band and come back exactly."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN, SAMPLES, run_python

import ckpt
import ckpt.tables
from ckpt.errors import CkptError
from ckpt.values import pickle_value, unpickle_value

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")
pl = pytest.importorskip("polars")
from polars.testing import assert_frame_equal as assert_polars_equal  # noqa: E402

MiB = 1 << 20


def round_trip(value: object) -> object:
    pickled = pickle_value(value)
    assert "unpicklable" not in pickled.description, pickled.description
    # as a load hands them over: bytes of their own, not the object's memory
    return unpickle_value(pickled.inband, [bytearray(buffer) for buffer in pickled.buffers])


def address(buffer: memoryview) -> int:
    """Where the buffer's memory starts (read-only memory too)."""
    return int(np.frombuffer(buffer, dtype=np.uint8).ctypes.data)


def out_of_band(value: object) -> tuple[int, int]:
    """The pickled value's in-band size, and the bytes it has out of band."""
    pickled = pickle_value(value)
    return len(pickled.inband), sum(buffer.nbytes for buffer in pickled.buffers)


# -- pandas ------------------------------------------------------------------------

N = 6
PANDAS_COLUMNS = {
    "datetime": lambda: pd.date_range("2024-01-01", periods=N, freq="min"),
    "datetime-tz": lambda: pd.date_range("2024-03-31", periods=N, freq="h", tz="Europe/Paris"),
    "datetime-ns": lambda: pd.date_range("2024-01-01", periods=N, freq="ns", unit="ns"),
    "timedelta": lambda: pd.to_timedelta(np.arange(N), unit="s"),
    "period": lambda: pd.period_range("2024-01", periods=N, freq="M"),
    "interval": lambda: pd.interval_range(0, N),
    "categorical-ordered": lambda: pd.Categorical(list("abcabc"), categories=list("cba"),
                                                  ordered=True),
    "Int64": lambda: pd.array([1, None, 3, 4, None, 6], dtype="Int64"),
    "boolean": lambda: pd.array([True, None, False] * 2, dtype="boolean"),
    "Float64": lambda: pd.array([0.5, None, 1.5] * 2, dtype="Float64"),
    "str": lambda: pd.array(["a", None, "c"] * 2, dtype="str"),
    "string-python": lambda: pd.array(["a", None, "c"] * 2, dtype="string[python]"),
    "string-pyarrow": lambda: pd.array(["a", None, "c"] * 2, dtype="string[pyarrow]"),
    "arrow-timestamp-tz": lambda: pd.array(
        pd.date_range("2024-01-01", periods=N, tz="UTC"),
        dtype=pd.ArrowDtype(pa.timestamp("ms", "UTC"))),
    "arrow-list": lambda: pd.array([[1], [], None] * 2, dtype=pd.ArrowDtype(pa.list_(pa.int8()))),
    "sparse": lambda: pd.arrays.SparseArray([0.0, 0.0, 1.0] * 2, fill_value=0.0),
    "object": lambda: np.array([1, "two", (3,)] * 2, dtype=object),
    "float32": lambda: np.arange(N, dtype=np.float32),
}


@pytest.mark.parametrize("make", PANDAS_COLUMNS.values(), ids=PANDAS_COLUMNS.keys())
def test_a_pandas_column_of_every_dtype_comes_back_exactly(make):
    frame = pd.DataFrame({"x": make(), "n": np.arange(N)})
    back = round_trip(frame)
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back["x"].dtype == frame["x"].dtype  # equal dtypes, spelled out


@pytest.mark.parametrize("index", [
    pd.MultiIndex.from_arrays([[1, 1, 2, 2, 3, 3], pd.date_range("2024", periods=N, tz="UTC")],
                              names=["run", "at"]),
    pd.DatetimeIndex(pd.date_range("2024", periods=N, freq="D", tz="America/New_York"),
                     name="day"),
    pd.CategoricalIndex(list("abcdef"), name="key"),
    pd.RangeIndex(10, 10 + 2 * N, 2),
    pd.TimedeltaIndex(np.arange(N) * 10**9),
], ids=["multi", "datetime-tz", "categorical", "range", "timedelta"])
def test_the_index_column_names_and_attrs_come_back(index):
    columns = pd.MultiIndex.from_tuples([("a", 1), ("a", 2), (3, "b")], names=["top", None])
    frame = pd.DataFrame(np.arange(3 * N, dtype=float).reshape(N, 3), index=index,
                         columns=columns)
    frame.attrs["source"] = {"sensor": 7}
    frame = frame.set_flags(allows_duplicate_labels=False)
    back = round_trip(frame)
    pd.testing.assert_frame_equal(back, frame, check_exact=True, check_flags=True)
    assert back.attrs == {"source": {"sensor": 7}}
    series = frame[("a", 1)].rename("named")
    pd.testing.assert_series_equal(round_trip(series), series, check_exact=True)


def test_a_datetime_column_goes_out_of_band_not_copied():
    when = pd.date_range("2024-01-01", periods=MiB // 8, freq="s", tz="UTC")
    frame = pd.DataFrame({"when": when, "delay": when - when[0]})
    inband, outside = out_of_band(frame)
    assert inband < 8 * 1024  # numpy's own reducer would put both columns, 2 MiB, in band
    assert outside >= 2 * MiB
    # the buffers are the frame's own memory, written later straight from there
    addresses = {address(buffer) for buffer in pickle_value(frame).buffers}
    assert frame["when"].array._ndarray.ctypes.data in addresses


@pytest.mark.parametrize("dtype", ["str", "string[pyarrow]", pd.ArrowDtype(pa.large_string())])
def test_an_arrow_backed_column_goes_out_of_band_not_copied(dtype):
    chunk = pa.array([f"word {i}" for i in range(MiB // 16)], pa.large_string())
    frame = pd.DataFrame({"word": pd.array(pa.chunked_array([chunk, chunk]), dtype=dtype)})
    pickled = pickle_value(frame)
    assert len(pickled.inband) < 8 * 1024
    # pandas' reducer would combine the chunks into a copy; here each goes as it is
    column = frame["word"].array._pa_array
    assert column.num_chunks == 2
    addresses = {address(buffer) for buffer in pickled.buffers}
    assert {chunk.buffers()[2].address for chunk in column.chunks} <= addresses
    pd.testing.assert_frame_equal(round_trip(frame), frame, check_exact=True)


def test_numpy_datetimes_keep_their_unit_byte_order_and_layout():
    grid = np.arange(12).astype("datetime64[s]").reshape(3, 4).T  # Fortran order
    swapped = np.arange(5).astype(">m8[ns]")
    back_grid, back_swapped, back_scalar, back_empty = round_trip(
        [grid, swapped, np.array(np.datetime64("2024-02-29")), np.array([], "M8")])
    assert (back_grid == grid).all() and back_grid.dtype == grid.dtype
    assert back_grid.flags.f_contiguous
    assert back_swapped.dtype == np.dtype(">m8[ns]") and (back_swapped == swapped).all()
    assert back_scalar == np.datetime64("2024-02-29") and back_empty.dtype == np.dtype("M8")


# -- pyarrow -----------------------------------------------------------------------


def arrow_table() -> pa.Table:
    table = pa.table({
        "id": pa.array([1, None, 3], pa.int32()),
        "when": pa.array([0, 1, None], pa.timestamp("us", "Asia/Tokyo")),
        "price": pa.array(["1.10", "2.20", None], pa.string()).cast(pa.decimal128(9, 2)),
        "tag": pa.array(["u", "v", "u"]).dictionary_encode(),
        "point": pa.array([{"x": 1, "y": "a"}, None, {"x": 3, "y": None}]),
        "tags": pa.array([["a"], [], None], pa.list_(pa.string())),
        "text": pa.array(["a", "bb", None], pa.string_view()),
    })
    return table.replace_schema_metadata({"origin": "sensor"})


def test_pyarrow_tables_batches_and_arrays_come_back_exactly():
    table = pa.concat_tables([arrow_table(), arrow_table()])  # two chunks
    batch = table.to_batches()[0]
    back_table, back_batch, back_column, back_array = round_trip(
        [table, batch, table.column("point"), batch.column(3)])
    assert back_table.equals(table, check_metadata=True)
    assert back_batch.equals(batch, check_metadata=True)
    assert back_column.equals(table.column("point"))
    assert back_array.equals(batch.column(3)) and back_array.type == batch.column(3).type


def test_a_pyarrow_tables_buffers_go_out_of_band():
    table = pa.table({"x": np.arange(MiB // 8, dtype=np.float64)})
    inband, outside = out_of_band(table)
    assert inband < 4096 and outside == MiB


def test_a_slice_of_a_big_table_is_stored_as_the_rows_it_has():
    table = pa.table({"x": np.arange(2 * MiB // 8, dtype=np.float64),
                      "s": pa.array([f"row {i}" for i in range(2 * MiB // 8)])})
    rows = table.slice(1000, 100)
    assert out_of_band(rows)[1] < 8 * 1024  # pyarrow's reducer writes the whole 5 MiB
    assert round_trip(rows).equals(rows)
    most = table.slice(10)  # nearly all of it: no copy made, the buffers go as they are
    assert out_of_band(most)[1] == table.get_total_buffer_size()


# -- polars ------------------------------------------------------------------------


def polars_frame() -> pl.DataFrame:
    import datetime as dt
    import decimal

    return pl.DataFrame({
        "i8": pl.Series([1, None, 3], dtype=pl.Int8),
        "u64": pl.Series([1, 2, 3], dtype=pl.UInt64),
        "f32": pl.Series([1.5, None, 3.0], dtype=pl.Float32),
        "dec": pl.Series([decimal.Decimal("1.10"), None, decimal.Decimal("2.25")],
                         dtype=pl.Decimal(10, 2)),
        "flag": [True, None, False],
        "text": ["a", None, "ccc"],
        "raw": [b"x", None, b"yy"],
        "day": [dt.date(2024, 2, 29), None, dt.date(2024, 3, 1)],
        "when": pl.Series([dt.datetime(2024, 3, 31, 1), None, dt.datetime(2024, 3, 31, 3)],
                          dtype=pl.Datetime("ns", "Europe/Paris")),
        "took": pl.Series([dt.timedelta(1)] * 3, dtype=pl.Duration("ms")),
        "at": [dt.time(1), None, dt.time(2)],
        "cat": pl.Series(["u", "v", "u"], dtype=pl.Categorical),
        "enum": pl.Series(["u", "v", "u"], dtype=pl.Enum(["v", "u", "w"])),
        "list": [[1, 2], [], None],
        "array": pl.Series([[1, 2], [3, 4], [5, 6]], dtype=pl.Array(pl.Int32, 2)),
        "struct": [{"x": 1, "y": "a"}, None, {"x": 3, "y": None}],
        "nothing": pl.Series([None] * 3, dtype=pl.Null),
    })


def test_a_polars_frame_of_every_dtype_comes_back_exactly():
    frame = polars_frame().with_columns(pl.col("u64").set_sorted())
    back = round_trip(frame)
    assert back.schema == frame.schema
    assert_polars_equal(back, frame)
    assert back["u64"].flags["SORTED_ASC"]  # Arrow does not carry it: kept beside


def test_a_polars_series_keeps_its_name_and_enum():
    series = pl.Series("grade", ["b", "a", "b"], dtype=pl.Enum(["b", "a"])).sort(
        descending=True)
    back = round_trip(series)
    assert (back.name, back.dtype, back.to_list()) == (series.name, series.dtype,
                                                       series.to_list())
    assert back.flags["SORTED_DESC"]


def test_a_polars_frame_goes_out_of_band_not_copied():
    frame = pl.DataFrame({"x": np.arange(MiB // 8, dtype=np.int64)})
    inband, outside = out_of_band(frame)
    assert inband < 4096  # polars' own pickle is one byte string of it all, in band
    assert outside >= MiB
    memory = frame["x"].to_numpy()  # a view of polars' memory (no nulls, one chunk)
    assert memory.ctypes.data in {address(buffer) for buffer in pickle_value(frame).buffers}


def test_dtypes_arrow_cannot_carry_keep_polars_own_pickle():
    wide = pl.DataFrame({"big": pl.Series([2**100, -1], dtype=pl.Int128),
                         "list": pl.Series([[2**100], []], dtype=pl.List(pl.Int128))})
    assert_polars_equal(round_trip(wide), wide)
    objects = pl.DataFrame({"o": pl.Series([object()], dtype=pl.Object)})
    # polars cannot pickle those at all: a placeholder says so, as before
    assert "Object" in pickle_value(objects).description["unpicklable"]


def test_where_arrow_cannot_take_a_frame_polars_own_pickle_keeps_it(monkeypatch):
    def refuse(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'pyarrow'")  # as without pyarrow

    monkeypatch.setattr(pl.DataFrame, "to_arrow", refuse)
    frame = polars_frame()
    assert_polars_equal(round_trip(frame), frame)


def test_pandas_pyarrow_and_polars_are_not_imported_by_ckpt():
    code = ("import sys, numpy, ckpt, ckpt.values; "
            "ckpt.values.pickle_value({'a': numpy.arange(3).astype('M8[D]'), 'b': [1, 'x']}); "
            "print(sorted({'pandas', 'pyarrow', 'polars'} & set(sys.modules)))")
    assert run_python("-c", code, check=True).stdout.strip() == "[]"


def test_frames_tables_and_batches_are_described_with_their_columns():
    from ckpt.values import describe

    table = arrow_table()
    for value in (table, table.to_batches()[0]):
        shown = describe(value)
        assert shown["shape"] == [3, 7]
        assert shown["columns"][:2] == [{"name": "id", "dtype": "int32"},
                                        {"name": "when", "dtype": "timestamp[us, tz=Asia/Tokyo]"}]
    shown = describe(polars_frame())
    assert shown["shape"] == [3, 17]
    assert shown["columns"][-1] == {"name": "nothing", "dtype": "Null"}
    series = describe(pl.Series("grade", ["a"], dtype=pl.Enum(["a"])))
    assert (series["shape"], series["dtype"]) == ([1], "Enum(categories=['a'])")
    for array in (table.column("tags"), table.column("tags").chunk(0)):
        shown = describe(array)
        assert (shown["shape"], shown["dtype"]) == ([3], "list<item: string>")


# -- through the decorator, the store and the command line ---------------------------


def test_a_captured_call_loads_each_library_back(store):
    @ckpt.ckpt(name="tables")
    def step(frame, table, polars):
        return len(frame) + len(table) + len(polars)

    frame = pd.DataFrame({"when": pd.date_range("2024", periods=3, tz="UTC"),
                          "kind": pd.Categorical(["a", "b", "a"])},
                         index=pd.Index(["x", "y", "z"], name="key"))
    frame.attrs["unit"] = "kg"
    step(frame, arrow_table(), polars_frame())
    loaded = ckpt.load("tables").arguments
    pd.testing.assert_frame_equal(loaded["frame"], frame, check_exact=True)
    assert loaded["frame"].attrs == {"unit": "kg"}
    assert loaded["table"].equals(arrow_table(), check_metadata=True)
    assert_polars_equal(loaded["polars"], polars_frame())


def cdip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "cdip"), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, stdin=subprocess.DEVNULL)


def capture_sample(tmp_path: Path, blocked: Path) -> list[str]:
    """Run tests/samples/frames_step.py; the lines it printed of its three values.

    `blocked` is first on its `sys.path`, as the replay restores it: a package
    planted there later stands for one not installed where the replay runs.
    """
    script = tmp_path / "frames_step.py"
    shutil.copy(SAMPLES / "frames_step.py", script)
    blocked.mkdir()
    captured = run_python(str(script), cwd=tmp_path, env={"PYTHONPATH": str(blocked)},
                          check=True)
    return captured.stdout.splitlines()


def test_cdip_run_replays_each_library_and_cdip_info_shows_the_columns(tmp_path):
    printed = capture_sample(tmp_path, tmp_path / "nothing")
    replayed = cdip("run", "step", "--mode", "run", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert [line for line in replayed.stdout.splitlines() if line in printed] == printed
    shown = cdip("info", "step", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    columns = [line.strip() for line in shown.stdout.splitlines()
               if line.strip().startswith("columns:")]
    assert columns == [
        "columns: when datetime64[us, Europe/Paris], kind category, count Int64, label string",
        "columns: id int32, name string",
        "columns: id Int64, tag Enum(categories=['v', 'u'])"]
    rows = {line.split()[0]: line.split()[1:4] for line in shown.stdout.splitlines()
            if line.startswith("  ") and not line.startswith("    ")}
    assert rows["table"] == ["pyarrow.lib.Table", "shape", "(3,"]
    assert rows["polars"] == ["polars.dataframe.frame.DataFrame", "shape", "(3,"]


def test_a_library_missing_at_replay_is_named_in_one_line(tmp_path):
    blocked = tmp_path / "blocked"
    capture_sample(tmp_path, blocked)
    (blocked / "pyarrow").mkdir()
    (blocked / "pyarrow" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'pyarrow'\", name='pyarrow')\n")
    replayed = cdip("run", "step", "--mode", "run", cwd=tmp_path)
    assert replayed.returncode == 2
    assert "it needs pyarrow, which is not installed here: pip install pyarrow" in (
        replayed.stderr)
    assert "Traceback" not in replayed.stderr
    assert "pyarrow.lib.Table" not in replayed.stdout  # the step never ran


def test_a_missing_module_of_another_package_keeps_pythons_own_error():
    with pytest.raises(ModuleNotFoundError, match="No module named 'no_such_module'") as caught:
        unpickle_value(b"cno_such_module\nthing\n.", [])  # a pickle naming no_such_module.thing
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(("value", "missing"), [
    (pd.DataFrame({"a": [1.0]}), "pandas"),
    (pa.table({"a": [1]}), "pyarrow"),
    (pl.DataFrame({"a": [1]}), "polars"),
    (pl.DataFrame({"a": [1]}), "pyarrow"),  # polars' frames travel as Arrow tables
], ids=["pandas", "pyarrow", "polars", "polars-needs-pyarrow"])
def test_ckpt_load_names_the_package_to_install(store, monkeypatch, value, missing):
    step = ckpt.ckpt(lambda data: None, name="needs")
    step(value)
    for module in [name for name in sys.modules if name.partition(".")[0] == missing]:
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(CkptError, match=f"it needs {missing}, which is not installed here: "
                                        f"pip install {missing}"):
        ckpt.load("needs")
