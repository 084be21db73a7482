"""torch tensors go out of band as their storage bytes and come back alike, on a device here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import BIN, SAMPLES, run_python

import ckpt
import ckpt.tensors
from ckpt.errors import CkptError
from ckpt.values import pickle_value, unpickle_value

torch = pytest.importorskip("torch")
HAS_CUDA = torch.cuda.is_available()


def round_trip(value: object) -> object:
    pickled = pickle_value(value)
    return unpickle_value(pickled.inband, pickled.buffers)


def same(a: torch.Tensor, b: torch.Tensor) -> None:
    assert type(a) is type(b)
    assert (a.dtype, a.shape, a.stride(), a.storage_offset(), a.requires_grad, a.device) == (
        b.dtype, b.shape, b.stride(), b.storage_offset(), b.requires_grad, b.device)
    assert torch.equal(a.detach(), b.detach())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16,
                                   torch.bool, torch.int64, torch.int8, torch.uint8,
                                   torch.complex64])
def test_every_dtype_comes_back_bit_for_bit(dtype):
    tensor = (torch.arange(24) % 3).reshape(2, 3, 4).to(dtype)
    same(round_trip(tensor), tensor)


@pytest.mark.parametrize("make", [
    lambda: torch.empty(0), lambda: torch.empty(3, 0, 2), lambda: torch.tensor(7.5),
    lambda: torch.arange(20.0).reshape(4, 5).t(), lambda: torch.arange(20.0)[3:17:4],
    lambda: torch.arange(60.0).reshape(3, 4, 5).permute(2, 0, 1)[1:, :, ::2],
    lambda: torch.arange(5.0).expand(3, 5),
], ids=["empty", "empty-3d", "0-d", "transposed", "strided-slice", "permuted", "expanded"])
def test_shape_strides_and_offset_are_kept(make):
    tensor = make()
    same(round_trip(tensor), tensor)


def test_autograd_flags_and_parameters_are_kept():
    leaf = torch.ones(3, requires_grad=True)
    derived = leaf * 2  # not a leaf: comes back a leaf that requires grad
    parameter = torch.nn.Parameter(torch.zeros(2, 2))
    frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
    back = round_trip([leaf, derived, parameter, frozen])
    assert [t.requires_grad for t in back] == [True, True, True, False]
    assert [type(t) for t in back] == [torch.Tensor, torch.Tensor, torch.nn.Parameter,
                                       torch.nn.Parameter]
    assert all(t.is_leaf for t in back)
    assert torch.equal(back[1].detach(), derived.detach())


def test_views_of_one_storage_share_it_after_a_load_and_it_is_stored_once():
    base = torch.arange(12.0)
    grid = base.view(3, 4)
    pickled = pickle_value({"base": base, "row": grid[1], "column": grid[:, 2]})
    assert [buffer.nbytes for buffer in pickled.buffers] == [48]
    back = unpickle_value(pickled.inband, pickled.buffers)
    back["row"][0] = -1.0  # a write through one view is seen through the others
    assert back["base"][4] == -1.0
    assert back["column"][1] == 6.0
    back["base"][6] = 100.0
    assert back["column"][1] == 100.0


def test_the_bytes_are_out_of_band_and_not_copied():
    tensor = torch.arange(256 * 1024, dtype=torch.float32)  # 1 MiB
    pickled = pickle_value(tensor)
    assert len(pickled.inband) < 1024
    [buffer] = pickled.buffers
    assert buffer.nbytes == tensor.nbytes
    # the buffer is the tensor's own memory: written later straight from there
    import ctypes

    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    assert address == tensor.untyped_storage().data_ptr()


def test_a_module_and_an_optimizers_state_come_back():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    back_model, back_state = round_trip([model, optimizer.state_dict()])
    for ours, theirs in zip(back_model.parameters(), model.parameters()):
        same(ours, theirs)
    assert torch.equal(back_model(torch.ones(1, 4)), model(torch.ones(1, 4)))
    state = optimizer.state_dict()
    assert back_state["param_groups"] == state["param_groups"]
    for key, values in state["state"].items():
        for name, value in values.items():
            same(back_state["state"][key][name], value)


@pytest.mark.parametrize("coalesce", [False, True])
def test_a_sparse_tensor_goes_out_of_band_as_its_indices_and_values(coalesce):
    sparse = torch.sparse_coo_tensor([[0, 1, 1], [1, 0, 0]], [3.0, 4.0, 5.0], (2, 3),
                                     check_invariants=True)
    sparse = sparse.coalesce() if coalesce else sparse
    pickled = pickle_value(sparse)
    # whole storages, as torch.save writes them (coalescing may leave the values' larger)
    assert sorted(buffer.nbytes for buffer in pickled.buffers) == sorted(
        part.untyped_storage().nbytes() for part in (sparse._values(), sparse._indices()))
    back = unpickle_value(pickled.inband, pickled.buffers)
    assert back.layout is torch.sparse_coo
    assert back.is_coalesced() == sparse.is_coalesced()
    assert torch.equal(back.to_dense(), sparse.to_dense())


def test_a_conjugate_view_stays_one_over_the_same_bytes():
    base = torch.tensor([1 + 2j, 3 - 4j])
    conjugated = base.conj()
    pickled = pickle_value({"base": base, "conjugated": conjugated})
    assert [buffer.nbytes for buffer in pickled.buffers] == [base.nbytes]
    back = unpickle_value(pickled.inband, pickled.buffers)
    assert back["conjugated"].is_conj()
    assert torch.equal(back["conjugated"].resolve_conj(), conjugated.resolve_conj())


def test_other_layouts_go_through_torchs_reducer_and_their_parts_out_of_band():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Sparse CSR tensor support is in beta state"
        csr = torch.tensor([[0.0, 1.0], [2.0, 0.0]]).to_sparse_csr()
    pickled = pickle_value(csr)
    # torch reduces it to its three plain tensors, and those come to us
    assert len(pickled.buffers) == 3
    back = unpickle_value(pickled.inband, pickled.buffers)
    assert back.layout is torch.sparse_csr
    assert torch.equal(back.to_dense(), csr.to_dense())


def test_a_tensors_python_attributes_come_back():
    tensor = torch.ones(2)
    tensor.label = "batch"
    assert round_trip(tensor).label == "batch"


# -- through the store, and onto a device -------------------------------------------


def test_a_captured_call_loads_its_tensors(store):
    @ckpt.ckpt
    def train(batch, weight):
        return batch @ weight

    batch, weight = torch.randn(8, 4), torch.nn.Parameter(torch.randn(4, 2))
    train(batch, weight)
    loaded = ckpt.load("test_a_captured_call_loads_its_tensors.<locals>.train", device="cpu")
    same(loaded.arguments["batch"], batch)
    same(loaded.arguments["weight"], weight)
    assert torch.equal(loaded.call(), batch @ weight)


def pretend_captured_on(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    """Record every storage as if it lived on `device` (what a GPU capture writes)."""
    monkeypatch.setattr(ckpt.tensors, "device_name", lambda storage: device)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU: nothing is mapped")
def test_a_gpu_capture_loads_on_the_cpu_with_one_notice(store, monkeypatch, capsys):
    pretend_captured_on(monkeypatch, "cuda:0")

    @ckpt.ckpt(name="gpu")
    def step(batch, target):
        return batch, target

    step(torch.ones(3), {"target": torch.zeros(2)})
    capsys.readouterr()
    loaded = ckpt.load("gpu")
    notes = capsys.readouterr().err.splitlines()
    assert notes == ["note: tensors captured on cuda:0 are loaded on the CPU (cuda:0 is not "
                     "available here); choose with --device or ckpt.load(device=...)"]
    assert loaded.arguments["batch"].device.type == "cpu"
    assert torch.equal(loaded.arguments["target"]["target"], torch.zeros(2))
    ckpt.load("gpu", device="cpu")
    assert capsys.readouterr().err == ""  # chosen, not mapped: nothing to tell


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU: nothing is mapped")
def test_a_gpu_tensor_the_saved_copy_of_a_function_holds_is_mapped_as_the_arguments_are(
        store, monkeypatch, capsys):
    pretend_captured_on(monkeypatch, "cuda:0")
    weight = torch.ones(3)

    @ckpt.ckpt(name="closure")
    def scaled(batch):  # a closure: replay calls its copy, whose cell holds `weight`
        return batch * weight

    scaled(torch.zeros(3))
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said as a load's note, not a warning
        loaded = ckpt.load("closure")
        held = loaded.saved_function.__closure__[0].cell_contents
    assert held.device.type == "cpu" and torch.equal(held, weight)
    notes = capsys.readouterr().err.splitlines()
    assert notes == ["note: tensors captured on cuda:0 are loaded on the CPU (cuda:0 is not "
                     "available here); choose with --device or ckpt.load(device=...)"]  # once
    chosen = ckpt.load("closure", device="cpu").saved_function
    assert chosen.__closure__[0].cell_contents.device.type == "cpu"
    assert capsys.readouterr().err == ""  # chosen, not mapped: nothing to tell


def test_the_storage_is_rebuilt_on_the_device_the_load_chose(monkeypatch):
    pretend_captured_on(monkeypatch, "cuda:3")
    pickled = pickle_value(torch.arange(4.0))
    with ckpt.tensors.loading_on("cpu") as notices:
        back = unpickle_value(pickled.inband, pickled.buffers)
    assert (back.device.type, notices) == ("cpu", [])
    moved = []
    monkeypatch.setattr(ckpt.tensors, "_usable", lambda device: True)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, device: moved.append(device) or self)
    with ckpt.tensors.loading_on(None) as notices:
        unpickle_value(pickled.inband, pickled.buffers)
    assert (moved, notices) == (["cuda:3"], [])  # the recorded device, where it is here


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")
def test_a_device_that_is_not_here_is_refused(store):
    @ckpt.ckpt(name="cpu-capture")
    def step(batch):
        return batch

    step(torch.ones(2))
    with pytest.raises(CkptError, match="device cuda: not available on this machine"):
        ckpt.load("cpu-capture", device="cuda")
    with pytest.raises(CkptError, match="not a device torch knows"):
        ckpt.load("cpu-capture", device="floppy")


def cdip(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "cdip"), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, stdin=subprocess.DEVNULL)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU: nothing is mapped")
def test_cdip_run_replays_a_gpu_capture_on_the_cpu(tmp_path):
    script = tmp_path / "torch_step.py"
    shutil.copy(SAMPLES / "torch_step.py", script)
    run_python(str(script), env={"PRETEND_DEVICE": "cuda:0"}, check=True)
    mapped = cdip("run", "step", "--mode", "run", cwd=tmp_path)
    assert mapped.returncode == 0, mapped.stderr
    assert "out on cpu, weight on cpu" in mapped.stdout
    assert mapped.stderr.count("note: tensors captured on cuda:0 are loaded on the CPU") == 1
    chosen = cdip("run", "step", "--mode", "run", "--device", "cpu", cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stderr
    assert "out on cpu" in chosen.stdout
    assert "note: tensors" not in chosen.stderr
    refused = cdip("run", "step", "--mode", "run", "--device", "cuda:1", cwd=tmp_path)
    assert refused.returncode == 2
    assert "cdip: error: device cuda:1: not available on this machine" in refused.stderr
    assert "code:" not in refused.stderr  # refused before the function's module is imported
    assert "out on" not in refused.stdout


# -- memory --------------------------------------------------------------------------

MEMORY_CHILD = """
import json, resource, sys, torch, ckpt
tensor = torch.ones(int(sys.argv[1]) // 4)
step = ckpt.ckpt(lambda tensor: None, name="big")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
step(tensor)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"increase": after - before}))
"""


def test_capturing_a_256_mib_tensor_makes_no_second_copy(store):
    size = 256 * 1024 * 1024
    result = run_python("-c", MEMORY_CHILD, str(size), check=True)
    increase = json.loads(result.stdout)["increase"]
    assert increase < size // 8, f"peak RSS grew by {increase / 2**20:.0f} MiB"
    assert ckpt.load("big").arguments["tensor"].shape == (size // 4,)


def test_torch_is_imported_only_for_a_tensor():
    code = ("import sys, ckpt, numpy; from ckpt.values import pickle_value; "
            "pickle_value({'a': numpy.ones(3), 'b': [1, 'x']}); "
            "print('torch' in sys.modules)")
    result = run_python("-c", code, check=True)
    assert result.stdout.strip() == "False"
    assert sys.modules.get("torch") is torch


# -- shown by `cdip info`, recorded at capture ------------------------------------------


def test_a_tensor_and_a_module_are_described_without_unpickling():
    from ckpt.header import ValueInfo
    from ckpt.values import describe

    tensor = describe(torch.nn.Parameter(torch.zeros(2, 3, dtype=torch.bfloat16)))
    assert (tensor["shape"], tensor["dtype"], tensor["device"], tensor["requires_grad"]) == (
        [2, 3], "torch.bfloat16", "cpu", True)
    model = describe(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)))
    assert (model["parameters"], model["device"]) == (4 * 3 + 3 + 3 + 3, "cpu")
    assert describe(torch.nn.ReLU())["parameters"] == 0  # no parameters: no device either
    info = ValueInfo.from_json({"name": "model", **model})
    assert (info.parameters, info.device) == (21, "cpu")
    old = ValueInfo.from_json({"name": "x", "type": "torch.Tensor", "shape": [2]})
    assert (old.requires_grad, old.parameters) == (None, None)  # written before these fields


def test_cdip_info_shows_the_model_and_the_batch(tmp_path):
    script = tmp_path / "torch_step.py"
    shutil.copy(SAMPLES / "torch_step.py", script)
    run_python(str(script), check=True)
    shown = cdip("info", "step", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines() if line.startswith("  ")}
    assert "10 parameters on cpu" in lines["model"]
    assert "shape (3, 4) torch.float32 on cpu" in lines["batch"]
    assert "requires grad" not in lines["batch"]


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU: nothing is mapped")
def test_outside_a_load_a_mapping_is_a_warning_once(monkeypatch):
    pretend_captured_on(monkeypatch, "cuda:7")
    monkeypatch.setattr(ckpt.tensors, "_warned", set())
    pickled = pickle_value(torch.ones(2))
    with pytest.warns(ckpt.CkptWarning, match="captured on cuda:7 are loaded on the CPU"):
        back = unpickle_value(pickled.inband, pickled.buffers)
    assert back.device.type == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unpickle_value(pickled.inband, pickled.buffers)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU: nothing is mapped")
def test_a_failed_gpu_step_replays_on_the_cpu_with_its_locals(tmp_path, store):
    script = tmp_path / "torch_step.py"
    shutil.copy(SAMPLES / "torch_step.py", script)
    failed = run_python(str(script), "fail", env={"PRETEND_DEVICE": "cuda:0"})
    assert failed.returncode == 1
    replayed = cdip("run", "step", "--mode", "run", cwd=tmp_path)
    assert replayed.returncode == 1, replayed.stderr
    assert "ValueError: loss is nan" in replayed.stderr
    assert "out on cpu, weight on cpu" in replayed.stdout
    assert replayed.stderr.count("note: tensors captured on cuda:0") == 1
    loaded = ckpt.load("step")
    out, weight = loaded.locals["out"], loaded.locals["weight"]
    assert out.requires_grad and out.is_leaf  # its graph is not saved: a leaf now
    assert isinstance(weight, torch.nn.Parameter)
    # Equal, not one: each argument and local is its own value (shared only within one).
    assert torch.equal(weight, loaded.arguments["model"].weight)


# -- a GPU storage is streamed to the store a chunk at a time ------------------------
# CI has no GPU: `_streams` sends CPU storages down the same path (`DeviceBytes`); only
# the device-to-host copy differs, and that is torch's `copy_`.


def stream_cpu_storages(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Send every CPU storage the way of a GPU one; returns the host buffers chunks used."""
    monkeypatch.setattr(ckpt.tensors, "_streams", lambda flat: True)
    addresses: list[int] = []
    original = ckpt.tensors.DeviceBytes.chunks

    def chunks(self, size, depth):
        import ctypes

        for chunk in original(self, size, depth):
            addresses.append(ctypes.addressof(ctypes.c_char.from_buffer(chunk)))
            yield chunk

    monkeypatch.setattr(ckpt.tensors.DeviceBytes, "chunks", chunks)
    return addresses


def blob_files(store: Path) -> list[Path]:
    return sorted(path for path in (store / "blobs").rglob("*") if path.is_file())


def test_a_device_storage_is_streamed_through_a_few_reused_host_buffers(store, monkeypatch):
    addresses = stream_cpu_storages(monkeypatch)

    @ckpt.ckpt(name="gpu-step", active=False)
    def step(batch, weight):
        out = batch @ weight  # noqa: F841 (a local the capture keeps)
        raise ValueError("loss is nan")

    batch = torch.randn(64, 1 << 16)  # 16 MiB: two chunks and a bit
    weight = torch.randn(1 << 16, 3)
    with pytest.raises(ValueError, match="loss is nan"):
        step(batch, weight)
    assert addresses, "the storage did not go through DeviceBytes"
    assert len(set(addresses)) <= 6  # never the whole storage: the same few buffers reused
    # stored once, though it is an argument and a local of the failing frame
    assert [path.stat().st_size for path in blob_files(store)] == [batch.nbytes]
    loaded = ckpt.load("gpu-step")
    same(loaded.arguments["batch"], batch)
    same(loaded.arguments["weight"], weight)
    assert torch.equal(loaded.locals["out"], batch @ weight)


def test_a_streamed_storage_gets_the_blob_id_a_host_one_gets(store, monkeypatch):
    @ckpt.ckpt(name="same")
    def keep(batch):
        return batch.shape

    batch = torch.arange(3 << 20, dtype=torch.float32)  # 12 MiB
    keep(batch)  # from host memory
    ids = [path.name for path in blob_files(store)]
    stream_cpu_storages(monkeypatch)
    keep(batch)  # streamed: hashed to the same id, so not written again
    keep(batch.clone())  # another storage, the same bytes
    assert [path.name for path in blob_files(store)] == ids
    assert len(ckpt.checkpoints()) == 3


def test_two_streamed_storages_of_one_family_are_both_kept(store, monkeypatch):
    stream_cpu_storages(monkeypatch)

    @ckpt.ckpt(name="family")
    def keep(batch):
        return batch.shape

    first = torch.zeros(5 << 20, dtype=torch.uint8)  # the same length and first 8 MiB
    second = first.clone()
    second[-1] = 7
    keep(first)
    keep(second)  # its family is there: hashed as it streams, then put by a second stream
    assert len(blob_files(store)) == 2
    entries = ckpt.checkpoints()  # oldest first
    assert [int(ckpt.load(entry.id).arguments["batch"][-1]) for entry in entries] == [0, 7]


def test_views_of_a_streamed_storage_stay_views(store, monkeypatch):
    stream_cpu_storages(monkeypatch)

    @ckpt.ckpt(name="views")
    def keep(pair):  # views are shared within one value (each argument is its own)
        return pair["row"].sum()

    base = torch.arange(1 << 20, dtype=torch.float32).view(1024, 1024)
    keep({"base": base, "row": base[3]})
    loaded = ckpt.load("views").arguments["pair"]
    loaded["row"][0] = -1.0
    assert loaded["base"][3, 0] == -1.0


def test_a_device_failing_mid_copy_leaves_the_users_exception_and_no_blob(store, monkeypatch):
    stream_cpu_storages(monkeypatch)
    original = ckpt.tensors.DeviceBytes.chunks

    def failing(self, size, depth):
        for index, chunk in enumerate(original(self, size, depth)):
            if index == 2:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            yield chunk

    monkeypatch.setattr(ckpt.tensors.DeviceBytes, "chunks", failing)

    @ckpt.ckpt(name="broken", active=False)
    def step(batch):
        raise ValueError("loss is nan")

    with pytest.raises(ValueError, match="loss is nan"), pytest.warns(ckpt.CkptWarning):
        step(torch.ones(8 << 20))  # 32 MiB: four chunks
    assert blob_files(store) == []  # nothing half-written left behind


@pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU (scripts/bench_gpu.py's machine runs it)")
def test_a_cuda_step_is_streamed_and_loads_on_the_gpu_or_the_cpu(store):
    torch.manual_seed(0)
    model = torch.nn.Linear(1024, 1024).cuda()  # a 4 MiB weight: streamed
    batch = torch.randn(4096, 1024, device="cuda")
    columns = batch.t()[::2]  # a strided view of the same storage

    @ckpt.ckpt(name="cuda-step")
    def step(model, data):
        return model(data["batch"]).sum()

    step(model, {"batch": batch, "columns": columns})
    on_gpu = ckpt.load("cuda-step")
    data = on_gpu.arguments["data"]
    same(data["batch"], batch)
    same(data["columns"], columns)
    pointers = {data[name].untyped_storage().data_ptr() for name in ("batch", "columns")}
    assert len(pointers) == 1  # still views of one storage
    weight = on_gpu.arguments["model"].weight
    assert isinstance(weight, torch.nn.Parameter) and weight.device.type == "cuda"
    same(weight, model.weight)
    on_cpu = ckpt.load("cuda-step", device="cpu")
    assert on_cpu.arguments["model"].weight.device.type == "cpu"
    assert torch.equal(on_cpu.arguments["data"]["columns"], columns.cpu())


@pytest.mark.parametrize("streamed", [False, True], ids=["host", "device"])
def test_a_model_and_its_optimizer_read_and_store_each_parameter_once(store, monkeypatch,
                                                                      streamed):
    # two arguments over the same parameters (a training step's): each is its own
    # pickle, so two buffers over one memory; hashed (copied off the GPU) once, not twice
    import ckpt.blobwrite

    if streamed:
        stream_cpu_storages(monkeypatch)
    real, stored = ckpt.blobwrite._store, []

    def counted(view, blobs, fsync):
        stored.append(view.nbytes)
        return real(view, blobs, fsync)

    monkeypatch.setattr(ckpt.blobwrite, "_store", counted)
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(512, 512, bias=False) for _ in range(6)])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    @ckpt.ckpt(name="train", active=False)
    def train_step(model, optimizer):
        raise ValueError("loss is nan")

    with pytest.raises(ValueError, match="loss is nan"):
        train_step(model, optimizer)
    assert len(stored) == 6  # one a parameter (1 MiB each)
    assert len(blob_files(store)) == 6
    loaded = ckpt.load("train").arguments
    for ours, theirs in zip(loaded["model"].parameters(), model.parameters()):
        same(ours, theirs)
    for ours, theirs in zip(loaded["optimizer"].param_groups[0]["params"], model.parameters()):
        same(ours, theirs)
