"""PyTorch tensors pickled as their storage bytes, out of band, and rebuilt on a chosen device."""

from __future__ import annotations

import contextlib
import pickle
import sys
import threading

from .streamed import StreamedBuffer

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

    def __init__(self, storage: Any, out_of_band: bool) -> None:
        self.storage = storage
        self.out_of_band = out_of_band

    def __reduce__(self) -> tuple[Any, ...]:
        storage = self.storage
        return rebuild_storage, (_host_bytes(storage, self.out_of_band), device_name(storage),
                                 storage.nbytes())


def device_name(storage: Any) -> str:
    """The device a storage lives on, as recorded (``cpu``, ``cuda:0``)."""
    return str(storage.device)


def _host_bytes(storage: Any, out_of_band: bool) -> pickle.PickleBuffer:
    """The storage's bytes, for the pickle's out-of-band buffer list.

    A CPU storage is not copied: the buffer is a view of its memory, written later
    straight from there. A large one on another device stays there: the writer
    copies it out a chunk at a time (`DeviceBytes`); a small one is copied now, as
    is every one of a pickle that keeps its buffers in band (a function's copy, whose
    globals may hold a model: a `DeviceBytes` there would be its empty bytearray).
    """
    from .fileformat import BLOB_MIN

    flat = _flat(storage)
    if flat.device.type != "cpu" or _streams(flat):
        # a blob: written by chunks (a smaller one is in the part)
        if out_of_band and flat.nbytes >= BLOB_MIN:
            return pickle.PickleBuffer(DeviceBytes(flat))
        flat = flat.cpu()
    array: Any = flat.numpy()  # numpy's array keeps the tensor, so the memory, alive
    return pickle.PickleBuffer(array)


def _flat(storage: Any) -> Any:
    """A 1-d uint8 tensor over all of `storage`'s bytes (no copy)."""
    import torch

    flat = torch.empty(0, dtype=torch.uint8, device=storage.device)
    return flat.set_(storage, 0, (storage.nbytes(),), (1,))


def _streams(flat: Any) -> bool:
    """Whether a CPU storage goes the way of a GPU one (tests: the same code, no GPU)."""
    return False


class DeviceBytes(StreamedBuffer):
    """A device storage's bytes, copied to the host a chunk at a time as they are written.

    The copies go through a few reused host buffers, pinned for CUDA (a copy from
    pinned memory runs at the bus's speed; from pageable memory the driver stages
    it through a pinned buffer of its own): the host never holds the whole storage.
    """

    def __init__(self, flat: Any) -> None:
        super().__init__()
        self.flat = flat
        self.nbytes = int(flat.nbytes)
        self.where = (str(flat.device), int(flat.data_ptr()), self.nbytes)

    def copies(self, size: int, depth: int) -> Iterator[memoryview]:
        """As `StreamedBuffer.copies`: each a copy in one of `depth` reused host buffers."""
        import torch

        pinned = self.flat.device.type == "cuda"
        staging = [torch.empty(min(size, self.nbytes), dtype=torch.uint8, pin_memory=pinned)
                   for _ in range(min(depth, -(-self.nbytes // size)))]
        if pinned:
            # A copy waits only for its own stream's work: a kernel the step queued on
            # another stream could still be writing, and each pass would see other bytes.
            torch.cuda.synchronize(self.flat.device)
        for index, start in enumerate(range(0, self.nbytes, size)):
            piece = self.flat[start : start + size]
            host = staging[index % len(staging)][: piece.nbytes]
            host.copy_(piece)  # waits for the copy (and for the work queued before it)
            array: Any = host.numpy()
            yield memoryview(array).cast("B")


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


def reduce_tensor(tensor: Any, storages: dict[tuple[Any, ...], _Storage],
                  out_of_band: bool = True) -> Any:
    """How a pickler writes `tensor`: a rebuild call over its storage, or NotImplemented.

    Args:
        tensor: any object whose type's module is torch's.
        storages: this pickle's storages so far, by device and address.
        out_of_band: whether the pickler hands its buffers to a callback (else a
            device's storage is copied to the host now: it goes in band).
    """
    if not _plain(tensor):
        return _reduce_composite(tensor)
    return rebuild_tensor, (
        storage_ref(tensor.untyped_storage(), storages, out_of_band),
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


def storage_ref(storage: Any, storages: dict[tuple[Any, ...], _Storage],
                out_of_band: bool = True) -> _Storage:
    """The one `_Storage` of this pickle for the memory `storage` covers."""
    pointer = storage.data_ptr()
    # Empty storages may all have address 0: they share nothing, each is its own.
    key = (str(storage.device), pointer, storage.nbytes()) if pointer else (id(storage),)
    found = storages.get(key)
    if found is None:
        found = storages[key] = _Storage(storage, out_of_band)
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
    used and this machine lacks, its tensors (or arrays) mapped to the CPU.

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
        notices += mapped.values()


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


def chosen_device() -> str | None:
    """The device this load puts everything on (``--device``), or None."""
    return getattr(_loading, "device", None)


def target_device(recorded: str) -> str:
    """Where a storage captured on `recorded` is rebuilt in this load."""
    chosen = chosen_device()
    if chosen is not None:
        return str(chosen)
    if recorded == "cpu" or _usable(recorded):
        return recorded
    tell_mapped(f"tensors captured on {recorded}", f"tensors captured on {recorded} are loaded "
                f"on the CPU ({recorded} is not available here)")
    return "cpu"


def tell_mapped(what: str, notice: str, choosable: bool = True) -> None:
    """Say once per load that `what` was not rebuilt where it was captured, and how instead.

    Within a load the notice is shown after it (`loading_on`), with how to choose
    the device unless the notice is not about one; outside any load that would
    tell (a bare unpickle), it is a warning, once per process.
    """
    mapped = getattr(_loading, "mapped", None)
    if mapped is not None:
        choose = "; choose with --device or ckpt.load(device=...)" if choosable else ""
        mapped[what] = notice + choose
        return
    import warnings

    from .errors import CkptWarning

    if what not in _warned:
        _warned.add(what)
        warnings.warn(notice, CkptWarning, stacklevel=3)


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
