"""PyTorch tensors pickled as their storage bytes, out of band, and rebuilt on a chosen device."""

from __future__ import annotations

import contextlib
import pickle
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

# torch itself is imported only by the functions below, which run only for a value
# whose type lives in torch (capture) or for a pickle that names them (load).


class _Storage:
    """One storage of the value being pickled; pickled once however many tensors view it.

    The pickler memoizes by object: every tensor over the same memory is reduced to
    this one object (found by `storage_ref`), so views stay views after a load.
    """

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def __reduce__(self) -> tuple[Any, ...]:
        storage = self.storage
        return rebuild_storage, (_host_bytes(storage), device_name(storage), storage.nbytes())


def device_name(storage: Any) -> str:
    """The device a storage lives on, as recorded (``cpu``, ``cuda:0``)."""
    return str(storage.device)


def _host_bytes(storage: Any) -> pickle.PickleBuffer:
    """The storage's bytes, for the pickle's out-of-band buffer list.

    A CPU storage is not copied: the buffer is a view of its memory, written later
    straight from there. Any other device's storage is copied to the host once.
    """
    import torch

    flat = torch.empty(0, dtype=torch.uint8, device=storage.device)
    flat.set_(storage, 0, (storage.nbytes(),), (1,))
    if flat.device.type != "cpu":
        flat = flat.cpu()  # the one device-to-host copy
    array: Any = flat.numpy()  # numpy's array keeps the tensor, so the memory, alive
    return pickle.PickleBuffer(array)


def _plain(tensor: Any) -> bool:
    """Whether `tensor` is all storage, shape and strides (else torch's own reducer)."""
    import torch

    return (type(tensor) in (torch.Tensor, torch.nn.Parameter)
            and tensor.layout is torch.strided and tensor.device.type != "meta"
            and not (tensor.is_quantized or tensor.is_nested or tensor.is_conj()
                     or tensor.is_neg())
            and _numpy())


def _numpy() -> bool:
    if "numpy" in sys.modules:
        return True
    try:
        import numpy  # noqa: F401 (the storage's memory is handed out as a numpy array)
    except ImportError:
        return False
    return True


def reduce_tensor(tensor: Any, storages: dict[tuple[Any, ...], _Storage]) -> Any:
    """How a pickler writes `tensor`: a rebuild call over its storage, or NotImplemented.

    Args:
        tensor: any object whose type's module is torch's.
        storages: this pickle's storages so far, by device and address.
    """
    if not _plain(tensor):
        return _reduce_composite(tensor)
    return rebuild_tensor, (
        storage_ref(tensor.untyped_storage(), storages),
        str(tensor.dtype).removeprefix("torch."), tensor.storage_offset(),
        tuple(tensor.shape), tensor.stride(), tensor.requires_grad,
        type(tensor).__name__ == "Parameter", dict(tensor.__dict__) or None)


def _reduce_composite(tensor: Any) -> Any:
    """A sparse or conjugated tensor as plain tensors (reduced in their turn), or NotImplemented.

    A sparse COO tensor is its indices and values; a tensor with the conjugate bit is
    the plain view under it (the same memory, the bit cleared). Anything else goes
    through torch's own reducer.
    """
    import torch

    if type(tensor) is not torch.Tensor or not _numpy() or tensor.device.type == "meta":
        return NotImplemented
    if tensor.layout is torch.sparse_coo:
        return rebuild_sparse_coo, (tensor._indices(), tensor._values(), tuple(tensor.shape),
                                    tensor.is_coalesced(), tensor.requires_grad)
    if (tensor.layout is torch.strided and tensor.is_conj() and not tensor.requires_grad
            and not (tensor.is_neg() or tensor.is_quantized or tensor.is_nested)):
        return rebuild_conjugate, (tensor.conj(),)
    return NotImplemented


def rebuild_sparse_coo(indices: Any, values: Any, shape: tuple[int, ...], coalesced: bool,
                       requires_grad: bool) -> Any:
    """The sparse COO tensor `_reduce_composite` took apart."""
    import torch

    # Not checked again: these are the parts of a tensor that was valid at capture, and
    # the file they came from verified.
    tensor = torch.sparse_coo_tensor(indices, values, shape, is_coalesced=coalesced,
                                     check_invariants=False)
    return tensor.requires_grad_(True) if requires_grad else tensor


def rebuild_conjugate(plain: Any) -> Any:
    """The conjugate view of `plain`, as it was captured (lazily conjugated)."""
    return plain.conj()


def storage_ref(storage: Any, storages: dict[tuple[Any, ...], _Storage]) -> _Storage:
    """The one `_Storage` of this pickle for the memory `storage` covers."""
    pointer = storage.data_ptr()
    # Empty storages may all have address 0: they share nothing, each is its own.
    key = (str(storage.device), pointer, storage.nbytes()) if pointer else (id(storage),)
    found = storages.get(key)
    if found is None:
        found = storages[key] = _Storage(storage)
    return found


def rebuild_storage(data: Any, device: str, nbytes: int) -> Any:
    """An untyped storage holding `data`'s bytes, on the device the load chooses.

    The bytes a load read (writable, aligned) become the storage's memory: no copy
    for the CPU.
    """
    import torch

    view = memoryview(data).cast("B")
    if view.nbytes != nbytes:
        raise ValueError(f"a tensor storage of {nbytes} bytes came with {view.nbytes}")
    if not nbytes:
        flat = torch.empty(0, dtype=torch.uint8)
    else:
        flat = torch.frombuffer(view if not view.readonly else bytearray(view),
                                dtype=torch.uint8)
    target = target_device(device)
    if target != "cpu":
        flat = flat.to(target)
    return flat.untyped_storage()


def rebuild_tensor(storage: Any, dtype: str, offset: int, shape: tuple[int, ...],
                   stride: tuple[int, ...], requires_grad: bool, parameter: bool,
                   state: dict[str, Any] | None) -> Any:
    """The tensor `reduce_tensor` described, over the rebuilt `storage`."""
    import torch

    kind = getattr(torch, dtype, None)
    if not isinstance(kind, torch.dtype):
        raise ValueError(f"unknown torch dtype {dtype!r}")
    tensor = torch.empty(0, dtype=kind, device=storage.device)
    tensor.set_(storage, offset, shape, stride)
    if parameter:
        tensor = torch.nn.Parameter(tensor, requires_grad=requires_grad)
    elif requires_grad:
        tensor.requires_grad_(True)
    if state:
        tensor.__dict__.update(state)
    return tensor


# -- choosing the device a load puts tensors on ---------------------------------------

_loading = threading.local()
_available: dict[str, bool] = {}
_warned: set[str] = set()  # devices mapped outside a load that tells (see target_device)


@contextlib.contextmanager
def loading_on(device: str | None) -> Iterator[list[str]]:
    """Rebuild tensors on `device` within this block (None: where they were, if here).

    Yields the notices to show afterwards: one line per device that a capture
    used and this machine lacks, its tensors mapped to the CPU.

    Args:
        device: a device `check_device` accepted, or None.
    """
    saved = getattr(_loading, "device", None), getattr(_loading, "mapped", None)
    _loading.device, _loading.mapped = device, {}
    notices: list[str] = []
    try:
        yield notices
    finally:
        mapped = _loading.mapped
        _loading.device, _loading.mapped = saved
        notices += [f"tensors captured on {what} are loaded on the CPU ({what} is not "
                    "available here); choose with --device or ckpt.load(device=...)"
                    for what in mapped]


def check_device(device: str) -> str:
    """`device` as torch spells it, once torch has made a tensor there.

    Raises:
        ValueError: torch is missing, does not know `device`, or cannot use it here.
    """
    try:
        import torch
    except ImportError as exc:
        raise ValueError("torch is not installed") from exc
    try:
        spelled = str(torch.device(device))
    except Exception as exc:  # torch's message says which devices it knows
        raise ValueError(f"not a device torch knows ({exc})".replace("\n", " ")) from exc
    if not _usable(spelled):
        raise ValueError("not available on this machine")
    return spelled


def target_device(recorded: str) -> str:
    """Where a storage captured on `recorded` is rebuilt in this load."""
    chosen = getattr(_loading, "device", None)
    if chosen is not None:
        return str(chosen)
    if recorded == "cpu" or _usable(recorded):
        return recorded
    mapped = getattr(_loading, "mapped", None)
    if mapped is None:  # outside any load that would tell: say it here, once per device
        import warnings

        from .errors import CkptWarning

        if recorded not in _warned:
            _warned.add(recorded)
            warnings.warn(f"tensors captured on {recorded} are loaded on the CPU",
                          CkptWarning, stacklevel=2)
    else:
        mapped[recorded] = True
    return "cpu"


def _usable(device: str) -> bool:
    """Whether this process can put a tensor on `device` (asked once per device)."""
    if device not in _available:
        import torch

        try:
            torch.empty(0, device=device)
        except Exception:  # not compiled in, no such card, no driver: all the same here
            _available[device] = False
        else:
            _available[device] = True
    return _available[device]
