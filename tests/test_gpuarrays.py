"""CuPy and JAX arrays captured on a GPU load as numpy arrays where the library or GPU is missing.

CI has neither library: what a laptop without them does is tested here for real; the
capture side and the rebuild on a GPU are checked by scripts/bench_gpu.py on one.
"""

from __future__ import annotations

import importlib.util
import pickle

import pytest

from ckpt.gpuarrays import rebuild_array
from ckpt.tensors import loading_on

numpy = pytest.importorskip("numpy")


def load_as_a_laptop_would(*reduced: object, device: str | None = None) -> tuple[object, list]:
    """Unpickle what `reduce_array` wrote, inside a load (which collects the notices)."""
    data = pickle.dumps(_Reduced(*reduced), protocol=5)
    with loading_on(device) as notices:
        value = pickle.loads(data)
    return value, notices


class _Reduced:
    """Pickles as the call `reduce_array` returns for an array (rebuild_array and its args)."""

    def __init__(self, *args: object) -> None:
        self.args = args

    def __reduce__(self):
        return rebuild_array, self.args


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="cupy is installed")
def test_a_cupy_array_loads_as_the_numpy_array_it_was_copied_to():
    host = numpy.arange(6, dtype=numpy.float32).reshape(2, 3)
    value, notices = load_as_a_laptop_would("cupy", host, "cuda:1", None)
    assert type(value) is numpy.ndarray
    assert numpy.array_equal(value, host)
    assert notices == ["CuPy arrays captured on cuda:1 are loaded as numpy arrays (cupy is not "
                       "installed here); choose with --device or ckpt.load(device=...)"]


@pytest.mark.skipif(importlib.util.find_spec("jax") is not None, reason="jax is installed")
def test_a_jax_array_loads_as_a_numpy_array_where_jax_is_missing():
    host = numpy.arange(4, dtype=numpy.int32)
    value, notices = load_as_a_laptop_would("jax", host, "gpu:0", {"weak_type": False})
    assert type(value) is numpy.ndarray
    assert numpy.array_equal(value, host)
    assert notices == ["JAX arrays captured on gpu:0 are loaded as numpy arrays (jax is not "
                       "installed here); choose with --device or ckpt.load(device=...)"]


def test_choosing_the_cpu_loads_a_cupy_array_as_numpy_and_says_so():
    host = numpy.ones(3)
    value, notices = load_as_a_laptop_would("cupy", host, "cuda:0", None, device="cpu")
    assert type(value) is numpy.ndarray
    assert notices == ["CuPy arrays captured on cuda:0 are loaded as numpy arrays; choose with "
                       "--device or ckpt.load(device=...)"]


def test_many_arrays_of_one_device_make_one_notice():
    # no machine has a 100th GPU: mapped, with cupy or without
    data = pickle.dumps([_Reduced("cupy", numpy.zeros(2), "cuda:99", None) for _ in range(5)])
    with loading_on(None) as notices:
        values = pickle.loads(data)
    assert len(values) == 5
    assert len(notices) == 1


def test_without_torch_the_cpu_is_still_a_device_to_choose():
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None  # as if torch were not installed\n"
            "from ckpt.checkpoint import usable_device\n"
            "from ckpt.errors import CkptError\n"
            "print(usable_device('cpu'))\n"
            "try:\n    usable_device('cuda')\n"
            "except CkptError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.splitlines() == ["cpu", "device cuda: torch is not installed"]


@pytest.mark.skipif(importlib.util.find_spec("ml_dtypes") is not None,
                    reason="ml_dtypes is installed (JAX brings it)")
def test_a_bfloat16_jax_array_loads_as_the_same_float32_values_where_ml_dtypes_is_missing():
    values = numpy.array([1.0, -2.5, 3.140625, numpy.inf, 0.0], dtype=numpy.float32)
    bits = (values.view(numpy.uint32) >> 16).astype(numpy.uint16)  # each exact in bfloat16
    value, notices = load_as_a_laptop_would("jax", bits, "gpu:0",
                                            {"weak_type": False, "dtype": "bfloat16"})
    assert value.dtype == numpy.float32
    assert numpy.array_equal(value, values)
    assert notices[-1] == ("JAX bfloat16 arrays are loaded as float32 (the same values; "
                           "ml_dtypes is not installed here)")


@pytest.mark.skipif(importlib.util.find_spec("ml_dtypes") is not None,
                    reason="ml_dtypes is installed (JAX brings it)")
def test_a_float8_jax_array_loads_as_its_bits_and_says_so_where_ml_dtypes_is_missing():
    bits = numpy.arange(256, dtype=numpy.uint8)
    value, notices = load_as_a_laptop_would("jax", bits, "gpu:0",
                                            {"weak_type": False, "dtype": "float8_e4m3fn"})
    assert numpy.array_equal(value, bits)
    assert notices[-1] == ("JAX float8_e4m3fn arrays are loaded as their bits, uint8 "
                           "(ml_dtypes is not installed here)")


def test_each_device_is_told_once_per_load_and_again_in_the_next_load():
    from ckpt.tensors import rebuild_storage

    class _Storage:  # pickles as a tensor storage captured on a GPU no machine has
        def __init__(self, device: str) -> None:
            self.device = device

        def __reduce__(self):
            return rebuild_storage, (bytearray(4), self.device, 4)

    values = [*(_Reduced("cupy", numpy.zeros(2), device, None)
                for device in ("cuda:98", "cuda:99", "cuda:98")),
              _Storage("cuda:99"), _Storage("cuda:99")]
    pytest.importorskip("torch")
    data = pickle.dumps(values)
    for _ in range(2):
        with loading_on(None) as notices:
            pickle.loads(data)
        assert sorted(notice.split(" are ")[0] for notice in notices) == [
            "CuPy arrays captured on cuda:98", "CuPy arrays captured on cuda:99",
            "tensors captured on cuda:99"]
