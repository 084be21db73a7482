"""The CUDA check: GPU tensors, a failing training step, CuPy and JAX arrays, on a real GPU.

One short run, each measurement in a fresh child, side by side with torch.save and
torch.load in the same run; then the step replayed with edited code where CUDA is
hidden (as on a laptop) and on the GPU. Prints one line per figure and, with
--json FILE, writes them there. Where torch sees no GPU it says so and exits 0:
CI never has one (the same code is tested there through CPU storages).

Usage: python scripts/bench_gpu.py [--json FILE] [--mib N]

On a lent GPU machine (its Python has torch, cupy and jax, not platformdirs, and no
network): build the wheels here, `pip wheel --no-deps -w .whl .` and `pip download
--no-deps --only-binary=:all: --python-version 3.12 -d .whl platformdirs`, carry `.whl`,
and run `python3 -m pip install -q --no-index --no-deps .whl/*.whl && python3
scripts/bench_gpu.py` there (about 3 minutes on an H100; the GPU-only tests then run with
`python3 -m pytest tests/test_attacks_gpu.py tests/test_tensors.py -k "gpu or cuda"`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
import torch
import ckpt
case, kind, phase, target = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
nbytes = int(sys.argv[4])
MiB = 1 << 20

def sync():
    torch.cuda.synchronize()

def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def host_rss():  # now, not the peak: what the process holds besides the GPU
    import psutil
    return psutil.Process().memory_info().rss

torch.manual_seed(0)
# CUDA's copy kernels and pinned pool loaded before the base, for both writers alike
torch.empty(1 << 20, device="cuda").cpu()
torch.empty(1 << 20, device="cuda").to("cpu", non_blocking=False).pin_memory()
if case == "pinned":  # what the staging buffers alone cost: six 8 MiB pinned buffers, filled
    source = torch.empty(8 * MiB, dtype=torch.uint8, device="cuda")
    base = rss()
    staging = [torch.empty(8 * MiB, dtype=torch.uint8, pin_memory=True) for _ in range(6)]
    for host in staging:
        host.copy_(source)
    print(json.dumps({"seconds": 0, "extra_rss": rss() - base}))
elif case == "many" and phase == "save":  # a model of many parameters of a few MiB each
    model = torch.nn.Sequential(*[torch.nn.Linear(1024, 512) for _ in range(128)]).cuda()
    sync()
    base, started = rss(), time.perf_counter()
    if kind == "ckpt":
        ckpt.ckpt(lambda model: None, name="many")(model)
    else:
        torch.save(model, target)
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "extra_rss": rss() - base}))
elif case == "tensor" and phase == "save":
    data = torch.randn(nbytes // 4, device="cuda")
    sync()
    base, started = rss(), time.perf_counter()
    if kind == "ckpt":
        ckpt.ckpt(lambda data: None, name="gputensor")(data)
    else:
        torch.save(data, target)
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "extra_rss": rss() - base}))
elif case == "tensor":
    torch.empty(1, device="cuda"); sync()  # CUDA's own start-up is not the load's
    base, started = rss(), time.perf_counter()
    if kind == "ckpt":
        data = ckpt.load("gputensor").arguments["data"]
    else:
        data = torch.load(target, map_location="cuda")
    sync()
    elapsed = time.perf_counter() - started
    assert data.device.type == "cuda" and data.nbytes == nbytes
    print(json.dumps({"seconds": elapsed, "extra_rss": rss() - base}))
else:  # a failing training step: model, batch and target on the GPU
    sys.path.insert(0, os.path.dirname(target))
    import train
    model, batch, target_ = train.make()
    train.step(model, batch, target_, fail=False); sync()  # warm: cuBLAS, allocator
    base = rss()
    started = time.perf_counter()
    if kind == "ckpt":
        try:
            train.step_ckpt(model, batch, target_, fail=True)
        except FloatingPointError:
            pass
    elif kind == "none":
        try:
            train.step(model, batch, target_, fail=True)
        except FloatingPointError:
            pass
    else:
        out = model(batch); loss = torch.nn.functional.cross_entropy(out, target_); sync()
        torch.save({"model": model, "batch": batch, "target": target_, "out": out,
                    "loss": loss}, os.path.join(os.path.dirname(target), "step.pt"))
    elapsed = time.perf_counter() - started
    distinct = sum(t.untyped_storage().nbytes() for t in
                   [*model.parameters(), batch, target_]) + batch.shape[0] * 1024 * 4
    print(json.dumps({"seconds": elapsed, "extra_rss": rss() - base, "distinct": distinct}))
"""

TRAIN = '''
import torch
import ckpt

def make():
    model = torch.nn.Sequential(torch.nn.Linear(8192, 4096), torch.nn.ReLU(),
                                torch.nn.Linear(4096, 1024)).cuda()  # 144 MiB of weights
    batch = torch.randn(8192, 8192, device="cuda")  # 256 MiB
    target = torch.randint(0, 1024, (8192,), device="cuda")
    return model, batch, target

def step(model, batch, target, fail):
    out = model(batch)
    loss = torch.nn.functional.cross_entropy(out, target)
    if loss.is_cuda:
        torch.cuda.synchronize()
    if fail:
        raise FloatingPointError("loss is nan")
    return loss

step_ckpt = ckpt.ckpt(name="train_step", active=False)(step)
'''

ARRAYS = r"""
import json, os, sys
import ckpt
what = sys.argv[1]
if what == "save":
    import cupy, jax, jax.numpy as jnp
    @ckpt.ckpt(name="arrays")
    def keep(c, j, small):
        return float(c.sum()) + float(j.sum())
    small = jnp.asarray(2.5)  # weakly typed, as a Python scalar is
    keep(cupy.arange(1 << 24, dtype=cupy.float32), jnp.arange(1 << 24, dtype=jnp.float32), small)
    print(json.dumps({"saved": True}))
else:
    loaded = ckpt.load("arrays").arguments
    c, j, small = loaded["c"], loaded["j"], loaded["small"]
    def where(x):
        module = type(x).__module__.split(".")[0]
        device = getattr(x, "device", None)
        if module == "jaxlib" or module == "jax":
            device = str(next(iter(x.devices())))
        return f"{module} {device}"
    import numpy
    ok = bool(numpy.asarray(c.get() if hasattr(c, "get") else c)[-1] == (1 << 24) - 1
              and numpy.asarray(j)[-1] == (1 << 24) - 1)
    weak = getattr(getattr(small, "aval", None), "weak_type", None)
    print(json.dumps({"c": where(c), "j": where(j), "equal": ok, "small_weak": weak}))
"""


def child(code: str, *args: str, env: dict[str, str]) -> dict:
    """Run `code` in a fresh interpreter; its last line of output, as JSON."""
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            text=True, env=env)
    if result.returncode:
        raise SystemExit(f"child {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def store_bytes(path: Path) -> int:
    """The bytes of every file under `path`."""
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def main() -> int:
    """Measure, replay and print (see the module)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    parser.add_argument("--mib", type=int, default=1024)
    options = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to check (CI covers the same code on the CPU)")
        return 0
    figures: dict[str, object] = {"card": torch.cuda.get_device_name(0),
                                  "torch": torch.__version__}
    print(f"{figures['card']}, torch {figures['torch']}, Python {sys.version.split()[0]}")
    work = Path(tempfile.mkdtemp(prefix="ckpt-gpu-"))
    env = dict(os.environ, PYCKPT_DIR=str(work / "store"), PYCKPT_FSYNC="0",
               PYCKPT_MAX_BYTES=str(64 << 30), XLA_PYTHON_CLIENT_PREALLOCATE="false")
    nbytes = options.mib << 20

    def tensor_round(kind: str) -> dict:
        target = str(work / "tensor.pt")
        save = child(CHILD, "tensor", kind, "save", str(nbytes), target, env=env)
        load = child(CHILD, "tensor", kind, "load", str(nbytes), target, env=env)
        # as the first load after a reboot or an import: no verification record, every
        # byte hashed (torch.load verifies nothing, so it just loads again)
        shutil.rmtree(work / "store" / ".verified", ignore_errors=True)
        cold = child(CHILD, "tensor", kind, "load", str(nbytes), target, env=env)
        return {"save": save, "load": load, "cold": cold}

    runs = {"ckpt": [], "torch": []}
    for _ in range(3):
        for kind in runs:
            runs[kind].append(tensor_round(kind))
        (work / "tensor.pt").unlink(missing_ok=True)
        shutil.rmtree(work / "store", ignore_errors=True)

    def median(kind: str, phase: str, what: str) -> float:
        return sorted(run[phase][what] for run in runs[kind])[1]

    pinned = child(CHILD, "pinned", "ckpt", "save", "0", str(work / "x"), env=env)
    figures["pinned_staging_extra_rss"] = pinned["extra_rss"]
    print(f"six 8 MiB pinned staging buffers, filled: host peak RSS "
          f"+{pinned['extra_rss'] / 2**20:.0f} MiB")
    for phase in ("save", "load", "cold"):
        ours, theirs = median("ckpt", phase, "seconds"), median("torch", phase, "seconds")
        ratio = theirs / ours if phase == "save" else ours / theirs
        figures[f"tensor_{phase}"] = {"ckpt_s": ours, "torch_s": theirs, "ratio": ratio,
                                      "ckpt_extra_rss": median("ckpt", phase, "extra_rss"),
                                      "torch_extra_rss": median("torch", phase, "extra_rss")}
        name = {"save": "capture throughput vs torch.save",
                "load": "ckpt.load to the GPU (warm) / torch.load(map_location='cuda')",
                "cold": "ckpt.load to the GPU (cold: hashed) / torch.load(...)"}[phase]
        print(f"{options.mib} MiB CUDA tensor, {name}: {ratio:.2f}x (ckpt {ours:.2f} s, torch "
              f"{theirs:.2f} s; host peak RSS +{median('ckpt', phase, 'extra_rss') / 2**20:.0f} "
              f"MiB vs +{median('torch', phase, 'extra_rss') / 2**20:.0f} MiB)")

    many = {kind: sorted(child(CHILD, "many", kind, "save", "0", str(work / "many.pt"),
                               env=dict(env, PYCKPT_DIR=str(work / f"many-{run}")))["seconds"]
                         for run in range(3))[1] for kind in ("ckpt", "torch")}
    figures["many"] = {"ckpt_s": many["ckpt"], "torch_s": many["torch"],
                       "ratio": many["torch"] / many["ckpt"]}
    print(f"a model of 128 parameters of 2 MiB on the GPU: capture {many['ckpt']:.2f} s vs "
          f"torch.save {many['torch']:.2f} s ({many['torch'] / many['ckpt']:.2f}x throughput)")

    # -- a failing training step --------------------------------------------------------
    project = work / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    step_env = dict(env, PYCKPT_DIR=str(work / "step-store"))
    target = str(project / "x")
    results = {kind: [child(CHILD, "step", kind, "save", "0", target, env=step_env)
                      for _ in range(3 if kind != "ckpt" else 1)] for kind in ("none", "torch")}
    results["ckpt"] = [child(CHILD, "step", "ckpt", "save", "0", target, env=step_env)]
    written = store_bytes(work / "step-store")
    for _ in range(2):  # two more, each into an empty store
        shutil.rmtree(work / "step-store", ignore_errors=True)
        results["ckpt"].append(child(CHILD, "step", "ckpt", "save", "0", target, env=step_env))
    bare = sorted(r["seconds"] for r in results["none"])[1]
    ours = sorted(r["seconds"] for r in results["ckpt"])[1] - bare
    theirs = sorted(r["seconds"] for r in results["torch"])[1] - bare
    distinct = results["ckpt"][0]["distinct"]
    torch_pt = (project / "step.pt").stat().st_size
    figures["step"] = {"ckpt_capture_s": ours, "torch_save_s": theirs, "ratio": theirs / ours,
                       "written": written, "distinct": distinct,
                       "torch_pt": torch_pt,
                       "ckpt_extra_rss": sorted(r["extra_rss"] for r in results["ckpt"])[1]}
    print(f"failing training step: capture {ours:.2f} s vs torch.save {theirs:.2f} s "
          f"({theirs / ours:.2f}x throughput); wrote {written / 2**20:.0f} MiB for "
          f"{distinct / 2**20:.0f} MiB distinct (torch.save {torch_pt / 2**20:.0f} MiB); "
          f"host peak RSS +{figures['step']['ckpt_extra_rss'] / 2**20:.0f} MiB")

    # -- replayed with edited code, where CUDA is hidden and on the GPU ------------------
    (project / "train.py").write_text(TRAIN.replace(
        'raise FloatingPointError("loss is nan")',
        'print(f"fixed: loss {float(loss):.3f} on {loss.device}")'))
    replays = {}
    for label, extra, args in (("no GPU", {"CUDA_VISIBLE_DEVICES": ""}, []),
                               ("GPU", {}, ["--device", "cuda"])):
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "ckpt", "run", "train_step", "--mode",
                                 "run", *args], cwd=project, capture_output=True, text=True,
                                env=dict(step_env, **extra))
        elapsed = time.perf_counter() - started
        lines = [line for line in (result.stdout + result.stderr).splitlines()
                 if ("fixed:" in line and not line.lstrip().startswith(("+", "-")))
                 or line.startswith(("note:", "Traceback", "cdip: error", "python -m ckpt: e"))]
        replays[label] = {"exit": result.returncode, "seconds": elapsed, "lines": lines,
                          "stderr": result.stderr[-2000:] if result.returncode else ""}
        print(f"cdip run train_step ({label}): exit {result.returncode} in {elapsed:.2f} s; "
              + " | ".join(lines) + (f"\n{result.stderr[-1500:]}" if result.returncode else ""))
    figures["replays"] = replays

    # -- CuPy and JAX arrays ------------------------------------------------------------
    arrays_env = dict(env, PYCKPT_DIR=str(work / "arrays-store"))
    try:
        child(ARRAYS, "save", env=arrays_env)
        on_gpu = child(ARRAYS, "load", env=arrays_env)
        hidden = subprocess.run([sys.executable, "-c", ARRAYS, "load"], capture_output=True,
                                text=True, env=dict(arrays_env, CUDA_VISIBLE_DEVICES="",
                                                    JAX_PLATFORMS="cpu"))
        figures["arrays"] = {"gpu": on_gpu, "hidden": hidden.stdout.strip(),
                             "hidden_notes": [line for line in hidden.stderr.splitlines()
                                              if "note:" in line or "rror" in line]}
        print(f"CuPy/JAX arrays loaded on the GPU: {on_gpu}; CUDA hidden: "
              f"{hidden.stdout.strip()} {figures['arrays']['hidden_notes']}")
    except SystemExit as exc:  # cupy or jax missing or broken there: say so, go on
        figures["arrays"] = {"error": str(exc)[-1500:]}
        print(f"CuPy/JAX: {str(exc)[-1500:]}")
    if options.json:
        Path(options.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
