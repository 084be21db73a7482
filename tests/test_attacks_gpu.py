"""Attacks on GPU storages streamed to the store: changed, failing, interrupted, odd sizes.

CI has no GPU: CPU storages take the GPU's path (`ckpt.tensors._streams`), the same
code but for torch's device-to-host copy. Every blob left in a store is checked
against its name by an oracle written here from the format's definition.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import s3server

import ckpt
import ckpt.blobs
import ckpt.tensors
from ckpt.errors import CkptError
from ckpt.fileformat import BLOB_MIN
from ckpt.streamed import ChunkReader, write_digests

torch = pytest.importorskip("torch")

s3_server = s3server.s3_server
s3_env = s3server.s3_env

CHUNK = 8 << 20  # the format's chunk: a blob id is built from each chunk's digest


def content_id(data: bytes) -> str:
    """The blob id `data` must be stored under (format 4), computed independently."""
    length = struct.pack("<Q", len(data))
    digests = b"".join(hashlib.sha256(data[start : start + CHUNK]).digest()
                       for start in range(0, len(data), CHUNK))
    family = hashlib.sha256(b"ckpt blob family\x00" + length + digests[:32]).hexdigest()[:16]
    return family + hashlib.sha256(b"ckpt blob\x00" + length + digests).hexdigest()


def blob_files(store: Path) -> list[Path]:
    return sorted(path for path in (store / "blobs").rglob("*") if path.is_file())


def assert_every_blob_is_what_its_name_says(store: Path) -> None:
    for path in blob_files(store):
        assert not path.name.startswith("."), f"a temporary left behind: {path}"
        assert content_id(path.read_bytes()) == path.name, f"{path.name} holds other bytes"


def stream_cpu_storages(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Send CPU storages the way of GPU ones; returns (storage bytes, pass) of each pass."""
    monkeypatch.setattr(ckpt.tensors, "_streams", lambda flat: True)
    passes: list[tuple[int, int]] = []
    original = ckpt.tensors.DeviceBytes.chunks

    def chunks(self, size, depth):
        passes.append((self.nbytes, len(passes)))
        yield from original(self, size, depth)

    monkeypatch.setattr(ckpt.tensors.DeviceBytes, "chunks", chunks)
    return passes


def fail_in_pass(monkeypatch: pytest.MonkeyPatch, nbytes: int, number: int, chunk: int,
                 raised: BaseException | None = None) -> None:
    """Make the `number`th pass (from 0) over a storage of `nbytes` fail at chunk `chunk`."""
    seen = [0]
    original = ckpt.tensors.DeviceBytes.chunks

    def chunks(self, size, depth):
        mine = self.nbytes == nbytes
        this = seen[0]
        seen[0] += mine
        for index, piece in enumerate(original(self, size, depth)):
            if mine and this == number and index == chunk:
                if raised is not None:
                    raise raised
                signal.raise_signal(signal.SIGINT)  # Ctrl-C, as the user would press it
            yield piece

    monkeypatch.setattr(ckpt.tensors.DeviceBytes, "chunks", chunks)


@ckpt.ckpt(name="step", active=False)
def step(batch):
    raise ValueError("loss is nan")


def save(batch) -> None:
    with pytest.raises(ValueError, match="loss is nan"):
        step(batch)


# -- a storage written into while it is saved ----------------------------------------


def family_there_but_not_the_blob(store: Path) -> tuple[object, object]:
    """A saved 12 MiB batch, and another of its family (length, first chunk) not saved yet."""
    first = torch.zeros(12 << 20, dtype=torch.uint8)
    save(first)
    second = first.clone()
    second[-1] = 7  # after the first chunk: hashed only, then put as missing
    return first, second


def write_into_before_the_put(monkeypatch: pytest.MonkeyPatch, tensor) -> None:
    """Another thread (or CUDA stream) writes into `tensor` between its hash and its put."""
    original = ckpt.blobs.Blobs.put

    def put(self, blob_id, data, fsync=False):
        tensor[-2] = 9
        return original(self, blob_id, data, fsync)

    monkeypatch.setattr(ckpt.blobs.Blobs, "put", put)


def test_a_host_storage_written_into_as_a_new_blob_is_written_is_stored_as_it_was_hashed(
        store, monkeypatch):
    # another thread writes right after each piece reaches the file, before it is hashed
    batch = torch.zeros(5 << 20)  # 20 MiB: three chunks, a MiB at a time
    original = ckpt.blobs.BlobWriter.write_at

    def write_at(self, data, offset):
        original(self, data, offset)
        batch[-1] += 1  # in the last piece: its file bytes and its hash would differ

    monkeypatch.setattr(ckpt.blobs.BlobWriter, "write_at", write_at)
    save(batch)
    assert_every_blob_is_what_its_name_says(store)  # not a blob that no load can verify


@pytest.mark.parametrize("size", [1 << 19, 5 << 20], ids=["one-chunk", "three-chunks"])
def test_a_host_storage_written_into_between_its_hash_and_its_write_is_not_stored_so(
        store, monkeypatch, size):
    batch = torch.zeros(size)  # its first chunk hashed (to name its family) before its write
    original = ckpt.blobs.Blobs.create

    def create(self, family):
        batch[0] = 9  # another thread writes into it between that hash and the write
        return original(self, family)

    monkeypatch.setattr(ckpt.blobs.Blobs, "create", create)
    if size * 4 <= CHUNK:  # one chunk: hashed and written from one copy, as it was then
        save(batch)
        assert float(ckpt.load("step").arguments["batch"][0]) == 0.0
    else:  # refused, not stored under the id of what it no longer is
        with pytest.warns(ckpt.CkptWarning, match="changed while it was being saved"):
            save(batch)
        assert ckpt.checkpoints() == []
    assert_every_blob_is_what_its_name_says(store)


def test_a_streamed_storage_written_between_its_hash_and_its_put_is_not_stored_under_that_id(
        store, monkeypatch):
    stream_cpu_storages(monkeypatch)
    _, second = family_there_but_not_the_blob(store)
    write_into_before_the_put(monkeypatch, second)
    with pytest.warns(ckpt.CkptWarning, match="changed while it was being saved"):
        save(second)
    assert_every_blob_is_what_its_name_says(store)
    assert len(ckpt.checkpoints()) == 1  # the first; the second said why it was not saved
    monkeypatch.undo()
    save(second)  # written again, whole: saved and loaded as it is now
    assert torch.equal(ckpt.load(ckpt.checkpoints()[-1].id).arguments["batch"], second)
    assert_every_blob_is_what_its_name_says(store)


def test_a_host_storage_written_between_its_hash_and_its_put_is_not_stored_under_that_id(
        store, monkeypatch):
    _, second = family_there_but_not_the_blob(store)
    write_into_before_the_put(monkeypatch, second)
    with pytest.warns(ckpt.CkptWarning, match="changed while it was being saved"):
        save(second)
    assert_every_blob_is_what_its_name_says(store)
    assert len(ckpt.checkpoints()) == 1  # the first; the second said why it was not saved


def test_a_host_storage_put_and_written_into_as_it_is_written_is_stored_as_it_was_checked(
        store, monkeypatch):
    _, second = family_there_but_not_the_blob(store)
    original = ckpt.blobs.BlobWriter.write

    def write(self, data):
        if memoryview(data).nbytes < CHUNK:  # the last chunk, once checked
            second[-1] = 5  # another thread, between the chunk's check and its write
        return original(self, data)

    monkeypatch.setattr(ckpt.blobs.BlobWriter, "write", write)
    save(second)
    assert_every_blob_is_what_its_name_says(store)
    assert int(ckpt.load(ckpt.checkpoints()[-1].id).arguments["batch"][-1]) == 7  # as checked


def test_a_pass_after_the_hashed_one_is_checked_against_it():
    flat = torch.arange(3 << 20, dtype=torch.int32).view(torch.uint8)  # 12 MiB, two chunks
    source = ckpt.tensors.DeviceBytes(flat)
    digests = write_digests(source, CHUNK, lambda chunk, offset: hashlib.sha256(chunk).digest())
    assert b"".join(bytes(chunk) for chunk in source.chunks(CHUNK, 1)) == flat.numpy().tobytes()
    assert content_id(flat.numpy().tobytes())[16:] == hashlib.sha256(
        b"ckpt blob\x00" + struct.pack("<Q", flat.nbytes) + digests).hexdigest()
    flat[-1] = 255  # written after it was named
    with pytest.raises(CkptError, match="changed while it was being saved"):
        list(source.chunks(CHUNK, 1))
    with pytest.raises(CkptError, match="changed while it was being saved"):
        ChunkReader(source, CHUNK).read()  # an upload stops; it publishes nothing


# -- a function's copy keeps its buffers in band --------------------------------------


def test_a_device_tensor_a_functions_copy_holds_comes_back_whole(store, monkeypatch):
    stream_cpu_storages(monkeypatch)
    weight = torch.arange(1 << 19, dtype=torch.float32)  # 2 MiB: a blob were it out of band

    @ckpt.ckpt(name="closure", active=False)
    def scaled(x):  # a closure: replay has only its copy, pickled by value with `weight`
        raise ValueError(float((weight * x).sum()))

    with pytest.raises(ValueError):
        scaled(2.0)
    copy = ckpt.load("closure").saved_function
    held = copy.__closure__[0].cell_contents
    assert torch.equal(held, weight)


# -- a failure in each pass leaves the user's exception and nothing half-written -----


@pytest.mark.parametrize(("family_there", "number", "chunk"), [
    (False, 0, 0),  # the first chunk, which names the family
    (False, 1, 1),  # writing a blob new to the store
    (True, 1, 1),  # hashing one whose family is there
    (True, 2, 1),  # putting it, found missing
], ids=["family-chunk", "write-pass", "hash-pass", "put-pass"])
def test_a_device_failing_in_any_pass_leaves_the_users_error_and_no_blob(
        store, monkeypatch, family_there, number, chunk):
    stream_cpu_storages(monkeypatch)
    batch = torch.ones(5 << 20)  # 20 MiB: three chunks
    if family_there:
        other = batch.clone()
        other[-1] = 2  # its family (length, first chunk), not its blob
        save(other)
    before = blob_files(store)
    fail_in_pass(monkeypatch, batch.nbytes, number, chunk,
                 RuntimeError("CUDA error: an illegal memory access was encountered"))
    with pytest.warns(ckpt.CkptWarning, match="illegal memory access"):
        save(batch)
    assert blob_files(store) == before
    assert_every_blob_is_what_its_name_says(store)
    assert not [path for path in store.iterdir() if path.name.startswith(".tmp")]
    assert not any(thread.name.startswith("ckpt-stream") for thread in threading.enumerate())


def test_a_disk_filling_up_mid_stream_leaves_the_users_error_and_no_blob(store, monkeypatch):
    stream_cpu_storages(monkeypatch)
    real = os.pwrite
    written = [0]

    def pwrite(fd: int, data: memoryview, offset: int) -> int:
        written[0] += 1
        if written[0] > 10:  # a few pieces in, from one of the writing threads
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.warns(ckpt.CkptWarning, match="No space left on device"):
        save(torch.ones(5 << 20))  # 20 MiB: three chunks, written a MiB at a time
    assert written[0] > 10
    assert blob_files(store) == []
    assert ckpt.checkpoints() == []


def test_ctrl_c_while_a_storage_streams_reaches_the_user_and_leaves_nothing(store, monkeypatch):
    stream_cpu_storages(monkeypatch)
    batch = torch.ones(5 << 20)
    fail_in_pass(monkeypatch, batch.nbytes, 1, 1)
    with pytest.raises(KeyboardInterrupt):
        step(batch)
    assert blob_files(store) == []
    assert ckpt.checkpoints() == []
    assert not [path for path in store.iterdir() if path.name.startswith(".tmp")]


# -- sizes at the blob threshold and the chunk boundaries ----------------------------


@pytest.mark.parametrize("nbytes", [0, 1, BLOB_MIN - 1, BLOB_MIN, CHUNK - 1, CHUNK, CHUNK + 1,
                                    2 * CHUNK + 1])
def test_a_streamed_storage_of_any_size_is_stored_as_a_host_one_is(store, monkeypatch, nbytes):
    batch = torch.randint(0, 256, (nbytes,), dtype=torch.uint8)
    save(batch)  # from host memory
    on_host = [path.name for path in blob_files(store)]
    passes = stream_cpu_storages(monkeypatch)
    save(batch.clone())  # streamed: the same id, not written again
    assert [path.name for path in blob_files(store)] == on_host
    assert bool(passes) == (nbytes >= BLOB_MIN)  # a smaller one is copied, in the part
    assert_every_blob_is_what_its_name_says(store)
    for entry in ckpt.checkpoints():
        assert torch.equal(ckpt.load(entry.id).arguments["batch"], batch)


def test_a_view_at_an_offset_of_a_streamed_storage_keeps_its_offset(store, monkeypatch):
    stream_cpu_storages(monkeypatch)
    base = torch.arange(1 << 20, dtype=torch.float32)  # 4 MiB
    view = base[1000:3000].view(40, 50).t()
    save(view)
    loaded = ckpt.load("step").arguments["batch"]
    assert (loaded.storage_offset(), loaded.stride(), loaded.shape) == (
        view.storage_offset(), view.stride(), view.shape)
    assert torch.equal(loaded, view)
    assert loaded.untyped_storage().nbytes() == base.nbytes  # the storage whole, as captured


# -- memory: a few reused host buffers, never overwritten while in use ---------------


def test_streaming_holds_a_few_host_buffers_and_never_reuses_one_still_being_written():
    flat = torch.randint(0, 256, (64 * 16 << 10,), dtype=torch.uint8)  # 64 chunks of 16 KiB
    size = 16 << 10
    source = ckpt.tensors.DeviceBytes(flat)
    addresses: set[int] = set()

    def slow_write(chunk: memoryview, offset: int) -> bytes:
        addresses.add(ctypes.addressof(ctypes.c_char.from_buffer(chunk)))
        time.sleep(0.002)  # a slow disk: the copies run ahead, as far as they may
        return hashlib.sha256(chunk).digest()  # wrong if its buffer was reused meanwhile

    digests = write_digests(source, size, slow_write)
    data = flat.numpy().tobytes()
    assert digests == b"".join(hashlib.sha256(data[start : start + size]).digest()
                               for start in range(0, len(data), size))
    assert len(addresses) <= 6  # of 64 chunks


# -- interpreter shutdown: no thread may be started ----------------------------------


@pytest.mark.parametrize("saved_before", [False, True], ids=["written", "hashed"])
def test_a_storage_streamed_from_an_atexit_handler_is_saved(store, saved_before):
    # the pool refuses new work once the interpreter shuts down: the chunks go inline
    sample = Path(__file__).parent / "samples" / "guest" / "shutdown_tensor.py"
    result = subprocess.run([sys.executable, str(sample), *(["saved-before"] * saved_before)],
                            capture_output=True, text=True, timeout=120)
    assert "ValueError: theirs from atexit" in result.stderr
    assert "CkptWarning" not in result.stderr, result.stderr
    saved = ckpt.checkpoints(directory=store)
    assert len(saved) == 1 + saved_before
    assert torch.equal(ckpt.load(saved[-1].id).arguments["batch"], torch.ones(5 << 20))
    assert_every_blob_is_what_its_name_says(store)


# -- a remote store: the upload is the pass that is checked --------------------------


UPLOAD_CHILD = """
import sys, warnings, torch, ckpt, ckpt.tensors, ckpt.blobs
from ckpt.store import Store
attack, url = sys.argv[1], sys.argv[2]
ckpt.tensors._streams = lambda flat: True  # CPU storages the GPU's way
batch = torch.ones(3 << 20)  # 12 MiB
if attack == "written-meanwhile":
    put = ckpt.blobs.Blobs.put
    def written(self, blob_id, data, fsync=False):
        batch[-2] = 9  # another thread (or CUDA stream) writes into it
        return put(self, blob_id, data, fsync)
    ckpt.blobs.Blobs.put = written
else:  # passes: the family's first chunk, the hash, the upload (this one, at its 2nd chunk)
    chunks, seen = ckpt.tensors.DeviceBytes.chunks, [0]
    def failing(self, size, depth):
        this = seen[0]
        seen[0] += 1
        for index, piece in enumerate(chunks(self, size, depth)):
            if this == 2 and index == 1:
                raise RuntimeError("CUDA error: launch failure")
            yield piece
    ckpt.tensors.DeviceBytes.chunks = failing

@ckpt.ckpt(name="step", active=False)
def step(batch):
    raise ValueError("loss is nan")

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        step(batch)
    except ValueError as exc:
        print("own:", exc)
print("warned:", " | ".join(str(warning.message) for warning in caught))
print("blobs:", Store(url).blobs.sizes())
"""


@pytest.mark.parametrize("attack", ["written-meanwhile", "device-fails"])
def test_a_streamed_upload_that_goes_wrong_publishes_no_object(s3_env, tmp_path, attack):
    # in a child: fsspec, once imported, keeps the first endpoint it saw (other test
    # files in this worker talk to servers of their own)
    url = f"s3://{s3server.BUCKET}/{uuid.uuid4().hex}"
    result = subprocess.run([sys.executable, "-c", UPLOAD_CHILD, attack, url],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**os.environ, "PYCKPT_DIR": url})
    assert result.returncode == 0, result.stderr
    own, warned, blobs = result.stdout.splitlines()
    assert own == "own: loss is nan"  # the program's own exception, unchanged
    expected = ("changed while it was being saved" if attack == "written-meanwhile"
                else "launch failure")
    assert expected in warned, warned
    assert blobs == "blobs: {}"  # nothing published under the id


# -- on a real GPU (skipped without one; run there by hand) ---------------------------

HAS_CUDA = torch.cuda.is_available()
cuda_only = pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU")


@cuda_only
def test_on_a_gpu_a_storage_written_between_its_hash_and_its_put_is_refused(store, monkeypatch):
    first = torch.zeros(12 << 20, dtype=torch.uint8, device="cuda")
    save(first)
    second = first.clone()
    second[-1] = 7
    write_into_before_the_put(monkeypatch, second)  # a kernel writes into it
    with pytest.warns(ckpt.CkptWarning, match="changed while it was being saved"):
        save(second)
    assert_every_blob_is_what_its_name_says(store)
    assert len(ckpt.checkpoints()) == 1


@cuda_only
def test_on_a_gpu_a_tensor_a_functions_copy_holds_comes_back_whole(store):
    weight = torch.arange(1 << 19, dtype=torch.float32, device="cuda")

    @ckpt.ckpt(name="closure", active=False)
    def scaled(x):
        raise ValueError(float((weight * x).sum()))

    with pytest.raises(ValueError):
        scaled(2.0)
    held = ckpt.load("closure").saved_function.__closure__[0].cell_contents
    assert held.device.type == "cuda" and torch.equal(held, weight)
    chosen = ckpt.load("closure", device="cpu").saved_function.__closure__[0].cell_contents
    assert chosen.device.type == "cpu" and torch.equal(chosen, weight.cpu())  # as `--device`


@cuda_only
def test_on_a_gpu_jax_and_cupy_arrays_come_back_on_their_device_or_the_cpu(store):
    jax = pytest.importorskip("jax")
    cupy = pytest.importorskip("cupy")
    numpy = pytest.importorskip("numpy")
    array = jax.device_put(jax.numpy.arange(1 << 20, dtype="float32"), jax.devices("gpu")[0])
    matrix = cupy.arange(1 << 20, dtype=cupy.float32).reshape(1024, 1024).T  # not contiguous

    @ckpt.ckpt(name="arrays", active=False)
    def arrays(array, matrix):
        raise ValueError("nan")

    with pytest.raises(ValueError):
        arrays(array, matrix)
    loaded = ckpt.load("arrays").arguments
    assert next(iter(loaded["array"].devices())).platform == "gpu"
    assert numpy.array_equal(numpy.asarray(loaded["array"]), numpy.asarray(array))
    assert isinstance(loaded["matrix"], cupy.ndarray)
    assert cupy.array_equal(loaded["matrix"], matrix)
    on_cpu = ckpt.load("arrays", device="cpu").arguments
    assert next(iter(on_cpu["array"].devices())).platform == "cpu"
    assert type(on_cpu["matrix"]) is numpy.ndarray
    assert numpy.array_equal(on_cpu["matrix"], cupy.asnumpy(matrix))


LAPTOP = r"""
import json, sys
class NotHere:  # a laptop: neither JAX nor ml_dtypes nor CuPy
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("jax", "jaxlib", "ml_dtypes", "cupy"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NotHere())
import ckpt
array = ckpt.load("bf16").arguments["array"]
print(json.dumps([type(array).__name__, str(array.dtype), array.tolist()]))
"""


@cuda_only
def test_on_a_gpu_a_bfloat16_jax_array_loads_where_jax_and_ml_dtypes_are_missing(store):
    import json
    import os
    import subprocess
    import sys

    jax = pytest.importorskip("jax")
    numpy = pytest.importorskip("numpy")
    values = jax.numpy.asarray([1.0, -2.5, 3.140625, 0.0], dtype=jax.numpy.bfloat16)
    array = jax.device_put(values, jax.devices("gpu")[0])

    @ckpt.ckpt(name="bf16", active=False)
    def step(array):
        raise ValueError("nan")

    with pytest.raises(ValueError):
        step(array)
    loaded = ckpt.load("bf16").arguments["array"]
    assert loaded.dtype == array.dtype and bool((loaded == array).all())
    laptop = subprocess.run([sys.executable, "-c", LAPTOP], capture_output=True, text=True,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=120)
    assert laptop.returncode == 0, laptop.stderr
    assert json.loads(laptop.stdout) == ["ndarray", "float32", [1.0, -2.5, 3.140625, 0.0]]
    assert numpy.asarray(array).dtype.name == "bfloat16"  # what a plain pickle would need


@cuda_only
def test_on_a_gpu_work_queued_on_another_stream_is_done_before_the_storage_is_copied(store):
    # A fresh pinned allocation synchronizes the device by itself: an earlier save leaves
    # the staging buffers in torch's pinned cache, as every save of a training run but its
    # first. (Not yet seen failing without the fix: written after the last GPU run.)
    save(torch.full((12 << 20,), 2, dtype=torch.uint8, device="cuda"))
    batch = torch.zeros(12 << 20, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):  # the step's last kernels, still running as it raises
        torch.cuda._sleep(500_000_000)
        batch.fill_(1)
    save(batch)  # the capture copies on this thread's stream: not the one above
    loaded = ckpt.load(ckpt.checkpoints()[-1].id).arguments["batch"]
    assert bool((loaded == 1).all())  # what the step had written, whole, not a torn mix
