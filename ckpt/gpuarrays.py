"""CuPy and JAX arrays pickled as a numpy array and a device: rebuilt there, or on the CPU.

Their own reducers need the library (and for CuPy a GPU) wherever the pickle is
loaded, and put the bytes in band. Here an array becomes its host copy, a numpy
array that goes out of band like any other (into the store's blobs), plus the
device it was on. A load rebuilds it there when it can; else, as for tensors,
where the chosen device says, or on the CPU with one line saying so: a JAX array
on JAX's CPU device, a CuPy array (or a JAX one where JAX is missing) as the numpy
array it was copied to. A JAX array of one of ml_dtypes' types (bfloat16, float8...)
is saved as its bits and its dtype's name: a pickle of such an array would need
ml_dtypes to load at all.
"""

from __future__ import annotations

import sys

from . import tensors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MODULES = ("cupy", "jax", "jaxlib")  # the modules whose types are asked about here


def reduce_array(value: Any) -> Any:
    """How a pickler writes a CuPy or JAX array, or NotImplemented (their own reducer).

    Args:
        value: any object whose type's module is one of `MODULES`.
    """
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(value, cupy.ndarray):
        return rebuild_array, ("cupy", value.get(), f"cuda:{value.device.id}", None)
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(value, jax.Array):
        devices: list[Any] = list(value.devices()) if value.is_fully_addressable else []
        if len(devices) != 1:  # sharded over devices: JAX's own reducer
            return NotImplemented
        import numpy

        device = devices[0]
        host = numpy.asarray(value)
        extra: dict[str, Any] = {"weak_type": bool(value.aval.weak_type)}
        if host.dtype.isbuiltin == 2:  # bfloat16, float8...: ml_dtypes', which a pickle names
            extra["dtype"] = host.dtype.name  # their bits, then: loadable without ml_dtypes
            host = host.view(f"u{host.dtype.itemsize}")
        return rebuild_array, ("jax", host, f"{device.platform}:{device.id}", extra)
    return NotImplemented


def rebuild_array(library: str, host: Any, device: str, extra: dict[str, Any] | None) -> Any:
    """The array `reduce_array` described, on the device this load chooses (see module)."""
    chosen = tensors.chosen_device()
    if library == "cupy":
        return _cupy(host, _cuda_index(chosen if chosen is not None else device), device)
    return _jax(host, device if chosen is None else _jax_name(chosen), device, extra or {})


def _cuda_index(device: str) -> int | None:
    """The CUDA device number `device` names (``cuda`` is 0), or None for another kind."""
    kind, _, index = device.partition(":")
    if kind not in ("cuda", "gpu"):
        return None
    return int(index) if index.isdigit() else 0


def _jax_name(torch_device: str) -> str:
    """A device as this load's choice spells it (torch's way) in JAX's words."""
    index = _cuda_index(torch_device)
    return f"gpu:{index}" if index is not None else "cpu:0"


def _cupy(host: Any, index: int | None, recorded: str) -> Any:
    if index is not None:
        try:
            import cupy

            with cupy.cuda.Device(index):
                return cupy.asarray(host)
        except Exception as exc:  # not installed, no such card, no driver: all the same here
            why = _why(exc, "cupy", recorded)
    else:
        why = ""
    tensors.tell_mapped(f"CuPy arrays captured on {recorded}",
                        f"CuPy arrays captured on {recorded} are loaded as numpy arrays{why}")
    return host


def _jax(host: Any, wanted: str, recorded: str, extra: dict[str, Any]) -> Any:
    platform, _, index = wanted.partition(":")
    try:
        import jax
    except Exception as exc:
        tensors.tell_mapped(f"JAX arrays captured on {recorded}",
                            f"JAX arrays captured on {recorded} are loaded as numpy arrays"
                            f"{_why(exc, 'jax', recorded)}")
        return _typed(host, extra.get("dtype"))
    host = _typed(host, extra.get("dtype"))  # (JAX brings ml_dtypes)
    try:
        device = jax.devices(platform)[int(index or 0)]
    except Exception:  # no such platform or card here
        device = jax.devices("cpu")[0]
        tensors.tell_mapped(f"JAX arrays captured on {recorded}",
                            f"JAX arrays captured on {recorded} are loaded on the CPU "
                            f"({wanted} is not available here)")
    if extra.get("weak_type") and host.ndim == 0:
        # a Python scalar's weak type (it promotes nothing): JAX gives it to a scalar put
        weak = jax.device_put(host.item(), device)
        if weak.dtype == host.dtype:
            return weak
    return jax.device_put(host, device)


def _typed(bits: Any, dtype: str | None) -> Any:
    """An array of ml_dtypes' `dtype` from its bits; without ml_dtypes, what numpy has nearest.

    A bfloat16 is the upper half of a float32: widened exactly. Another (float8,
    int4...) stays its bits, with a notice saying so.
    """
    if dtype is None:
        return bits
    import numpy

    try:
        import ml_dtypes  # type: ignore[import-not-found,unused-ignore]

        return bits.view(numpy.dtype(getattr(ml_dtypes, dtype)))
    except (ImportError, AttributeError):
        pass
    if dtype == "bfloat16":
        tensors.tell_mapped("JAX bfloat16 arrays", "JAX bfloat16 arrays are loaded as float32 "
                            "(the same values; ml_dtypes is not installed here)", choosable=False)
        return (bits.astype(numpy.uint32) << 16).view(numpy.float32)
    tensors.tell_mapped(f"JAX {dtype} arrays", f"JAX {dtype} arrays are loaded as their bits, "
                        f"{bits.dtype} (ml_dtypes is not installed here)", choosable=False)
    return bits


def _why(exc: BaseException, package: str, recorded: str) -> str:
    if isinstance(exc, ImportError):
        return f" ({package} is not installed here)"
    return f" ({recorded} is not available here)"
