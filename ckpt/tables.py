"""Data frames and Arrow data pickled with their buffers out of band (pandas, pyarrow, polars).

What the libraries' own reducers do, measured (pandas 3.1, pyarrow 26, polars 2.1):
pandas hands its blocks to numpy's and pyarrow's reducers, and both give their
buffers to pickle as `pickle.PickleBuffer`s: out of band, not copied. Four cases
are not, and this module takes them:

- numpy pickles a datetime64 or timedelta64 array in band, a copy inside the pickle
  stream: pandas' datetime and timedelta columns and indexes are such arrays. Here it
  goes as its int64 view (out of band) and is viewed back.
- pandas combines an Arrow-backed column's chunks before pickling it: a copy of the
  whole column (pandas' `str` columns are such columns when pyarrow is installed).
  Here its chunks go as they are.
- pyarrow pickles a slice with the whole buffers under it: 100 rows of a 1 GiB table
  are 1 GiB. A slice much smaller than its buffers is copied compact first.
- polars pickles a frame as one IPC byte string, in band. Here it goes as the Arrow
  table it shares its memory with (no copy), which pyarrow hands out in buffers.

Nothing here imports pandas, pyarrow or polars to pickle: a value of their types
means they are loaded. Loading needs them installed; where one is not, the error says
which package to install.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# The modules whose types `reduce_table` may take (the pickler's cheap first test).
# pandas' arrays say they are from pandas.arrays (pandas.core.arrays before 3.0); its
# scalars and frames, from pandas: a column of a million Timestamps is never asked.
MODULES = ("numpy", "pandas.arrays", "pandas.core.arrays", "pyarrow", "polars")

# A slice is stored compact when its buffers hold this many bytes (and as many as it
# uses) beyond what it uses; below that, the copy would cost more than it saves.
SLICE_SLACK = 1 << 20

# Which reducer of ours takes each type met so far (None: the library's own), decided
# once per type: a list of a million numpy scalars asks a million times.
_reducers: dict[type, Callable[[Any], Any] | None] = {}


def reduce_table(value: Any) -> Any:
    """How a pickler writes `value`, or NotImplemented (the library's own reducer).

    Args:
        value: any object whose type's module starts with one of `MODULES`.
    """
    kind = type(value)
    if kind not in _reducers:
        _reducers[kind] = _reducer_for(kind)
    reducer = _reducers[kind]
    if reducer is None:
        return NotImplemented
    try:
        return reducer(value)
    except Exception:  # a library version we do not know: its own reducer is right, if slower
        return NotImplemented


def _reducer_for(kind: type) -> Callable[[Any], Any] | None:
    module = kind.__module__
    try:
        if module == "numpy":
            return _reduce_datetimes if kind is sys.modules["numpy"].ndarray else None
        if module.startswith("pandas."):
            base = sys.modules["pandas"].arrays.ArrowExtensionArray
            pandas_state = (getattr(kind, "__getstate__", None) is base.__getstate__
                            and getattr(kind, "__setstate__", None) is base.__setstate__)
            return _reduce_pandas_arrow if issubclass(kind, base) and pandas_state else None
        if module == "pyarrow.lib":
            return _reduce_arrow_slice if issubclass(kind, sys.modules["pyarrow"].Array) else None
        if module.startswith("polars."):
            polars = sys.modules["polars"]
            return _reduce_polars if kind in (polars.DataFrame, polars.Series) else None
    except Exception:  # a library version we do not know: its own reducer it is
        return None
    return None


# -- numpy datetimes (pandas' datetime and timedelta columns) -------------------------


def _reduce_datetimes(array: Any) -> Any:
    if array.dtype.kind not in "mM":
        return NotImplemented
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        return NotImplemented  # numpy copies it contiguous in band; so would we
    # The same bytes as int64 (same byte order): numpy hands those out of band.
    return rebuild_datetimes, (array.view(array.dtype.str[0] + "i8"), array.dtype.str)


def rebuild_datetimes(integers: Any, dtype: str) -> Any:
    """The datetime64 or timedelta64 array `_reduce_datetimes` took apart: a view, no copy."""
    return integers.view(dtype)


# -- pandas' Arrow-backed columns -------------------------------------------------------


def _reduce_pandas_arrow(array: Any) -> Any:
    # pandas' own state less its combine_chunks(), which copies the column: its
    # __setstate__ takes the chunked array as readily as the combined one.
    return rebuild_pandas_arrow, (type(array), {**array.__dict__, "_cache": {}})


def rebuild_pandas_arrow(kind: Any, state: dict[str, Any]) -> Any:
    """The Arrow-backed pandas array `_reduce_pandas_arrow` took apart, by pandas' setstate."""
    array = kind.__new__(kind)
    array.__setstate__(state)
    return array


# -- pyarrow slices ---------------------------------------------------------------------


def _reduce_arrow_slice(array: Any) -> Any:
    """Tables, batches and chunked arrays come down to arrays: each is looked at here."""
    used = array.nbytes
    if array.get_total_buffer_size() - used < max(used, SLICE_SLACK):
        return NotImplemented
    # the rows it has, in new buffers
    return sys.modules["pyarrow"].concat_arrays([array]).__reduce__()


# -- polars -------------------------------------------------------------------------

# polars dtypes that come back from Arrow as they were (checked one by one); another
# (Object, Int128, an extension type) keeps polars' own pickle, in band.
_ARROW_EXACT = frozenset({
    "Boolean", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
    "Float16", "Float32", "Float64", "Decimal", "String", "Binary", "Date", "Datetime",
    "Duration", "Time", "Categorical", "Enum", "Null", "List", "Array", "Struct"})


def _reduce_polars(value: Any) -> Any:
    pl = sys.modules["polars"]
    series = type(value) is pl.Series
    frame = value.to_frame() if series else value  # a column keeps its dtype (an Enum's)
    if not all(_arrow_exact(dtype) for dtype in frame.schema.values()):
        return NotImplemented
    # Shares the memory. Raises where pyarrow is missing or cannot take a type: then
    # polars' own pickle it is (see reduce_table).
    table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
    return rebuild_polars, (table, series, _sorted(frame))


def _arrow_exact(dtype: Any) -> bool:
    """Whether `dtype`, and every dtype nested in it, comes back from Arrow unchanged."""
    if type(dtype).__name__ not in _ARROW_EXACT:
        return False
    inner = getattr(dtype, "inner", None)  # List, Array
    if inner is not None and not _arrow_exact(inner):
        return False
    return all(_arrow_exact(field.dtype) for field in getattr(dtype, "fields", None) or ())


def _sorted(frame: Any) -> dict[str, bool]:
    """The columns polars knows are sorted, name to descending (Arrow does not carry it)."""
    flags = {name: frame.get_column(name).flags for name in frame.columns}
    return {name: bool(flag.get("SORTED_DESC")) for name, flag in flags.items()
            if flag.get("SORTED_ASC") or flag.get("SORTED_DESC")}


def rebuild_polars(table: Any, series: bool, sorted_columns: dict[str, bool]) -> Any:
    """The polars DataFrame (or Series) `_reduce_polars` took apart, over the same buffers."""
    pl = library("polars")
    frame = pl.from_arrow(table, rechunk=False)
    if sorted_columns:
        frame = frame.with_columns(pl.col(name).set_sorted(descending=descending)
                                   for name, descending in sorted_columns.items())
    return frame.to_series() if series else frame


# -- shown by `cdip info` ----------------------------------------------------------------


def add_arrow_array(value: Any, description: dict[str, Any]) -> None:
    """A pyarrow array's length and type, as the shape and dtype `cdip info` shows.

    pyarrow is looked up, never imported: a value of its types means it is loaded.
    """
    pa = sys.modules.get("pyarrow")
    if pa is not None and isinstance(value, (pa.Array, pa.ChunkedArray)):
        description["shape"] = [len(value)]
        description["dtype"] = str(value.type)[:40]


# -- a library missing at load --------------------------------------------------------

# The package to install for each top-level module a pickled frame or array may need.
PACKAGES = {"numpy": "numpy", "pandas": "pandas", "pyarrow": "pyarrow", "polars": "polars",
            "torch": "torch"}


def library(name: str) -> Any:
    """Import `name`, or raise `missing_library`'s error for it."""
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = missing_library(exc)
        if missing is None:
            raise
        raise missing from exc


def missing_library(exc: ModuleNotFoundError) -> ModuleNotFoundError | None:
    """An error that names the package to install, for a module of `PACKAGES`; else None."""
    top = (exc.name or "").partition(".")[0]
    package = PACKAGES.get(top)
    if package is None:
        return None
    return ModuleNotFoundError(
        f"it needs {package}, which is not installed here: pip install {package}", name=top)
