"""A step on a pandas frame, a pyarrow table and a polars frame, saved when called.

For tests/test_tables.py: `python frames_step.py [fail]`.
"""

import sys

import ckpt

# The libraries are imported where the values are made, not by the step: a replay of
# the step imports this module, then loads the values, which need them all the same.


def pandas_frame():
    """Dtypes a round trip must keep: tz-aware datetimes, ordered categories, nullables."""
    import pandas as pd

    frame = pd.DataFrame(
        {"when": pd.date_range("2024-03-30", periods=4, freq="h", tz="Europe/Paris"),
         "kind": pd.Categorical(["a", "b", "a", "c"], ordered=True),
         "count": pd.array([1, None, 3, 4], dtype="Int64"),
         "label": pd.array(["x", None, "z", "w"], dtype="string[pyarrow]")},
        index=pd.MultiIndex.from_arrays([[1, 1, 2, 2], ["p", "q", "p", "q"]],
                                        names=["run", "arm"]))
    frame.attrs["source"] = "sensor"
    return frame


def arrow_table():
    import pyarrow as pa

    return pa.table({"id": pa.array([1, 2, None], pa.int32()),
                     "name": pa.array(["a", "b", "c"], pa.string())})


def polars_frame():
    import polars as pl

    return pl.DataFrame({"id": [1, 2, 3],
                         "tag": pl.Series(["u", "v", "u"], dtype=pl.Enum(["v", "u"]))})


@ckpt.ckpt
def step(frame, table, polars):
    for data in (frame, table, polars):
        print(f"{type(data).__module__}.{type(data).__name__} {describe(data)}")
    if sys.argv[1:] == ["fail"]:
        raise ValueError("bad rows")


def describe(data):
    """The dtypes as the library prints them: what a faithful replay must show again."""
    if hasattr(data, "attrs"):  # pandas
        dtypes = ", ".join(f"{name}: {dtype!r}" for name, dtype in data.dtypes.items())
        return f"{dtypes}; index {list(data.index.names)}; attrs {data.attrs}"
    schema = data.schema  # pyarrow: names and types; polars: a mapping
    pairs = zip(schema.names, schema.types) if hasattr(schema, "types") else schema.items()
    return ", ".join(f"{name}: {dtype}" for name, dtype in pairs)


if __name__ == "__main__":
    step(pandas_frame(), arrow_table(), polars_frame())
