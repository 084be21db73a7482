"""A step on a pandas frame, a pyarrow table or a polars frame, saved when called.

For tests/test_tables.py.

`python frames_step.py LIBRARY [fail]` calls the step on that library's value only.
"""

import sys

import ckpt


def make(library):
    """A small value of the library's, with the dtypes a round trip must keep."""
    if library == "pandas":
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
    if library == "pyarrow":
        import pyarrow as pa

        return pa.table({"id": pa.array([1, 2, None], pa.int32()),
                         "name": pa.array(["a", "b", "c"], pa.string())})
    import polars as pl

    return pl.DataFrame({"id": [1, 2, 3],
                         "tag": pl.Series(["u", "v", "u"], dtype=pl.Enum(["v", "u"]))})


@ckpt.ckpt
def step(data):
    print(f"{type(data).__module__}.{type(data).__name__} {describe(data)}")
    if sys.argv[2:] == ["fail"]:
        raise ValueError("bad rows")
    return data


def describe(data):
    """The dtypes as the library prints them: what a faithful replay must show again."""
    if hasattr(data, "attrs"):  # pandas
        dtypes = ", ".join(f"{name}: {dtype}" for name, dtype in data.dtypes.items())
        return f"{dtypes}; index {list(data.index.names)}; attrs {data.attrs}"
    schema = data.schema  # pyarrow: names and types; polars: a mapping
    pairs = zip(schema.names, schema.types) if hasattr(schema, "types") else schema.items()
    return ", ".join(f"{name}: {dtype}" for name, dtype in pairs)


if __name__ == "__main__":
    step(make(sys.argv[1]))
