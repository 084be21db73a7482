"""ckpt's benchmarks: every figure is a ratio against a reference measured in the same run.

Usage: scripts/bench [NAME ...] [--tiny] [--no-write]

With no NAME every benchmark runs; the table is printed and, for a full run,
BENCHMARKS.md is rewritten. `--tiny` uses small sizes and few repeats: it only
checks that the benchmarks still run (the `pytest -m bench` smoke test).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MiB = 1024 * 1024


@dataclass
class Row:
    """One measured figure: a value, the reference it is compared with, and a target."""

    benchmark: str
    what: str
    value: str
    ratio: float | None = None
    reference: str = ""
    target: str = ""

    @property
    def met(self) -> str:
        """`yes` or `NO` when the row has a target."""
        if not self.target or self.ratio is None:
            return ""
        op, bound = self.target.split(" ")
        limit = float(bound.rstrip("x"))
        ok = self.ratio <= limit if op == "<=" else self.ratio >= limit
        return "yes" if ok else "NO"


@dataclass
class Settings:
    """The run's options, working directory, and the rows measured so far."""

    tiny: bool
    rows: list[Row] = field(default_factory=list)
    workdir: Path = Path()

    def size(self, full: int, tiny: int) -> int:
        """The full figure, or the tiny one in a smoke run."""
        return tiny if self.tiny else full

    def add(self, *args: object, **kwargs: object) -> None:
        """Record a row and print it at once."""
        row = Row(*args, **kwargs)  # type: ignore[arg-type]
        self.rows.append(row)
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        print(f"  {row.what:<58} {row.value:>14} {ratio:>8} {row.target:>8} {row.met}",
              flush=True)


def median_time(function: Callable[[], object], repeats: int, number: int = 1) -> float:
    """Median seconds per call over `repeats` runs of `number` calls."""
    times = timeit.repeat(function, repeat=repeats, number=number)
    return statistics.median(times) / number


def side_by_side(functions: dict[str, Callable[[], object]], repeats: int,
                 number: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, runs interleaved so noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            samples[name].append(timeit.timeit(function, number=number) / number)
    return {name: statistics.median(values) for name, values in samples.items()}


def fresh_env(store: Path, **extra: str) -> dict[str, str]:
    """The environment of a benchmark subprocess, saving into `store`."""
    env = {**os.environ, "PYCKPT_DIR": str(store), **extra}
    env.pop("PYCKPT_DISABLE", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users run from compiled bytecode
    return env


# -- 1. idle cost --------------------------------------------------------------------


def bench_idle(settings: Settings) -> None:
    """active=False with no error, and active=True when disabled: the bare-wrapper cost."""
    import ckpt

    def function(x: object) -> object:
        return x

    def minimal(f: Callable[..., object]) -> Callable[..., object]:
        @functools.wraps(f)
        def wrapper(*args: object, **kwargs: object) -> object:
            try:
                return f(*args, **kwargs)
            except Exception:
                raise

        return wrapper

    wrapped = minimal(function)
    idle = ckpt.ckpt(active=False)(function)
    active = ckpt.ckpt(function)
    big = numpy.zeros(settings.size(100 * MiB // 8, 1000))
    # Short rounds, many of them: a burst of load on the shared machine then hits
    # every variant alike instead of one round of one.
    number, repeats = settings.size(20_000, 2000), settings.size(75, 3)
    ckpt.disable()
    try:
        times = side_by_side({
            "bare": lambda: function(1), "wrapper": lambda: wrapped(1),
            "idle": lambda: idle(1), "disabled": lambda: active(1),
            "idle-big": lambda: idle(big), "wrapper-big": lambda: wrapped(big),
        }, repeats, number)
    finally:
        ckpt.enable()
    ns = {name: value * 1e9 for name, value in times.items()}
    settings.add("idle", "undecorated call", f"{ns['bare']:.0f} ns")
    settings.add("idle", "minimal wraps+try/except wrapper", f"{ns['wrapper']:.0f} ns",
                 ns["wrapper"] / ns["bare"], "undecorated")
    settings.add("idle", "active=False, no error (vs minimal wrapper)", f"{ns['idle']:.0f} ns",
                 ns["idle"] / ns["wrapper"], "minimal wrapper", "<= 1.1x")
    settings.add("idle", "active=True, disabled (vs minimal wrapper)",
                 f"{ns['disabled']:.0f} ns", ns["disabled"] / ns["wrapper"], "minimal wrapper",
                 "<= 1.1x")
    settings.add("idle", "active=False with a 100 MiB argument (vs minimal wrapper)",
                 f"{ns['idle-big']:.0f} ns", ns["idle-big"] / ns["wrapper-big"],
                 "minimal wrapper, same argument", "<= 1.1x")


# -- 2. small capture ----------------------------------------------------------------


def bench_small(settings: Settings) -> None:
    """active=True with three small arguments, against a raw atomic write of the same bytes."""
    import ckpt

    store = settings.workdir / "small"
    os.environ["PYCKPT_DIR"] = str(store)

    @ckpt.ckpt
    def step(a: object, b: object, c: object) -> None:
        return None

    step(1, "two", [3.0, 4.0])
    size = ckpt.checkpoints()[-1].size
    payload = os.urandom(size)
    raw_dir = settings.workdir / "raw"
    raw_dir.mkdir()

    def raw_write() -> None:
        temporary = raw_dir / f".tmp-{os.getpid()}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(payload)
        os.replace(temporary, raw_dir / "final")

    repeats, number = settings.size(9, 2), settings.size(200, 5)
    times = side_by_side({"ckpt": lambda: step(1, "two", [3.0, 4.0]), "raw": raw_write},
                         repeats, number)
    settings.add("small", f"active=True, 3 small arguments ({size} B on disk)",
                 f"{times['ckpt'] * 1e6:.0f} us", times["ckpt"] / times["raw"],
                 f"raw atomic write of {size} B ({times['raw'] * 1e6:.0f} us)", "<= 2x")
    del os.environ["PYCKPT_DIR"]


# -- 3. large capture ----------------------------------------------------------------

LARGE_CHILD = """
import json, os, resource, sys, time, pickle, numpy
kind, what, nbytes, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
if what == "array":
    data = numpy.random.default_rng(0).standard_normal(nbytes // 8)
else:
    big = numpy.random.default_rng(0).standard_normal(nbytes // 8)
    data = {"big": big, **{f"a{i}": numpy.arange(1000.0) + i for i in range(50)}}
import ckpt, cloudpickle
if kind == "ckpt":
    f = ckpt.ckpt(lambda data: None)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
started = time.perf_counter()
if kind == "ckpt":
    f(data)
elif kind == "numpy":
    if what == "array":
        numpy.save(target, data)
    else:
        numpy.savez(target, **data)
elif kind == "pickle":
    with open(target, "wb") as s:
        pickle.dump(data, s, protocol=5)
elif kind == "cloudpickle":
    with open(target, "wb") as s:
        cloudpickle.dump(data, s, protocol=5)
elif kind == "joblib":
    import joblib
    joblib.dump(data, target)
if os.environ.get("BENCH_FSYNC") == "1" and kind != "ckpt":
    fd = os.open(target, os.O_RDONLY); os.fsync(fd); os.close(fd)
elapsed = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": elapsed, "extra_rss": peak - base}))
"""


def _large_once(settings: Settings, kind: str, what: str, nbytes: int, fsync: bool) -> dict:
    target = settings.workdir / f"large-{kind}.bin"
    store = settings.workdir / f"store-{kind}"
    env = fresh_env(store, PYCKPT_FSYNC="1" if fsync else "0", BENCH_FSYNC="1" if fsync else "0",
                    PYCKPT_MAX_BYTES=str(8 * nbytes + (1 << 30)))
    # Every run starts with no dirty pages left by the one before: otherwise the
    # kernel throttles whichever writer comes next, and np.save's own times swing
    # between 0.5 and 1.5 s for 1 GiB here.
    os.sync()
    result = subprocess.run([sys.executable, "-c", LARGE_CHILD, kind, what, str(nbytes),
                             str(target)], capture_output=True, text=True, env=env, check=True)
    shutil.rmtree(store, ignore_errors=True)
    for leftover in settings.workdir.glob("large-*"):
        leftover.unlink()
    return json.loads(result.stdout)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _dd(settings: Settings, nbytes: int) -> float:
    target = settings.workdir / "dd.bin"
    started = time.perf_counter()
    subprocess.run([shutil.which("dd") or "/bin/dd", "if=/dev/zero", f"of={target}", "bs=16M",
                    f"count={max(nbytes // (16 * MiB), 1)}", "conv=fdatasync"],
                   capture_output=True, check=True)
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def bench_large(settings: Settings) -> None:
    """A 1 GiB array, and 50 small arrays + 200 MB: capture against np.save, and peak RSS."""
    repeats = settings.size(5, 1)
    cases = [("array", settings.size(1 << 30, 4 * MiB), "1 GiB float64 array"),
             ("dict", settings.size(200 * 10**6, 2 * MiB), "dict: 50 small arrays + 200 MB")]
    for what, nbytes, label in cases:
        # joblib is not a dependency of ours: compared with only where it is installed
        others = ["pickle", "cloudpickle"] + (["joblib"] if _installed("joblib") else [])
        kinds = ["ckpt", "numpy", *others]
        results: dict[str, list[dict]] = {kind: [] for kind in kinds}
        for _ in range(repeats):
            for kind in kinds:
                results[kind].append(_large_once(settings, kind, what, nbytes, fsync=False))
        seconds = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
        rss = statistics.median(r["extra_rss"] for r in results["ckpt"])
        throughput = seconds["numpy"] / seconds["ckpt"]
        reference = "np.savez" if what == "dict" else "np.save"
        settings.add("large", f"{label}: ckpt throughput vs {reference}",
                     f"{nbytes / seconds['ckpt'] / MiB:.0f} MiB/s", throughput,
                     f"{reference} {nbytes / seconds['numpy'] / MiB:.0f} MiB/s", ">= 1.0x")
        for other in others:
            protocol = "" if other == "joblib" else " protocol 5"
            settings.add("large", f"{label}: {other}.dump{protocol} throughput vs ckpt",
                         f"{nbytes / seconds[other] / MiB:.0f} MiB/s",
                         seconds["ckpt"] / seconds[other], "ckpt")
        settings.add("large", f"{label}: ckpt peak RSS increase / argument size",
                     f"{rss / MiB:.1f} MiB", rss / nbytes, "argument size", "<= 0.05x")
        if what == "array":
            import hmac

            data = numpy.ones(nbytes // 8)
            started = time.perf_counter()
            hmac.new(b"k" * 32, memoryview(data).cast("B"), "sha256").digest()
            hashing = time.perf_counter() - started
            settings.add("large", f"{label}: ckpt throughput vs HMAC-SHA256 alone (one core)",
                         f"{nbytes / hashing / MiB:.0f} MiB/s hashing", hashing / seconds["ckpt"],
                         "hashing the same bytes, no I/O")
            del data
            synced = [_large_once(settings, "ckpt", what, nbytes, fsync=True)["seconds"]
                      for _ in range(repeats)]
            dd = [_dd(settings, nbytes) for _ in range(repeats)]
            settings.add("large", f"{label}: ckpt with PYCKPT_FSYNC=1 vs dd conv=fdatasync",
                         f"{nbytes / statistics.median(synced) / MiB:.0f} MiB/s",
                         statistics.median(dd) / statistics.median(synced),
                         f"dd {nbytes / statistics.median(dd) / MiB:.0f} MiB/s")


# -- 3b. torch tensors ---------------------------------------------------------------

TORCH_CHILD = """
import json, os, resource, sys, time, torch
kind, phase, nbytes, target = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
import ckpt
if phase == "save":
    data = torch.randn(nbytes // 4, generator=torch.Generator().manual_seed(0))
    f = ckpt.ckpt(lambda data: None, name="torchbench")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
started = time.perf_counter()
if phase == "save" and kind == "ckpt":
    f(data)
elif phase == "save":
    torch.save(data, target)
elif kind == "ckpt":
    data = ckpt.load("torchbench").arguments["data"]
else:
    data = torch.load(target)
elapsed = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
assert data.numel() == nbytes // 4
print(json.dumps({"seconds": elapsed, "extra_rss": peak - base}))
"""


def _torch_once(settings: Settings, kind: str, nbytes: int) -> dict[str, dict]:
    """Save then load one float32 tensor of `nbytes` with ckpt or torch, each in a child."""
    target = settings.workdir / "tensor.pt"
    store = settings.workdir / "store-torch"
    env = fresh_env(store, PYCKPT_FSYNC="0", PYCKPT_MAX_BYTES=str(8 * nbytes + (1 << 30)))
    results = {}
    for phase in ("save", "load", "cold"):
        os.sync()  # no dirty pages of the last run left to throttle this one
        if phase == "cold":  # as the first load after a reboot: no verification record
            shutil.rmtree(store / ".verified", ignore_errors=True)
        result = subprocess.run([sys.executable, "-c", TORCH_CHILD, kind,
                                 "load" if phase == "cold" else phase, str(nbytes),
                                 str(target)], capture_output=True, text=True, env=env,
                                check=True)
        results[phase] = json.loads(result.stdout)
    shutil.rmtree(store, ignore_errors=True)
    target.unlink(missing_ok=True)
    return results


def bench_torch(settings: Settings) -> None:
    """A 1 GiB float32 torch tensor (CPU): capture vs torch.save, ckpt.load vs torch.load."""
    if not _installed("torch"):
        print("  (torch is not installed: skipped)")
        return
    nbytes, repeats = settings.size(1 << 30, 4 * MiB), settings.size(3, 1)
    label = f"{nbytes / MiB:.0f} MiB float32 tensor"
    runs: dict[str, list[dict[str, dict]]] = {"ckpt": [], "torch": []}
    for _ in range(repeats):
        for kind in runs:
            runs[kind].append(_torch_once(settings, kind, nbytes))

    def median(kind: str, phase: str, what: str) -> float:
        return statistics.median(run[phase][what] for run in runs[kind])

    for phase, native, op in (("save", "torch.save", ">="), ("load", "torch.load", "<="),
                              ("cold", "torch.load", "<=")):
        ours, theirs = median("ckpt", phase, "seconds"), median("torch", phase, "seconds")
        verb = {"save": "capture", "load": "ckpt.load (warm: record from capture)",
                "cold": "ckpt.load (cold: no record, hashed)"}[phase]
        ratio = theirs / ours if phase == "save" else ours / theirs
        settings.add("torch", f"{label}: {verb} {'throughput vs' if phase == 'save' else 'time /'}"
                     f" {native}", f"{ours:.2f} s", ratio,
                     f"{native} {theirs:.2f} s", f"{op} {'1.0x' if phase == 'save' else '1.2x'}")
        rss, native_rss = median("ckpt", phase, "extra_rss"), median("torch", phase, "extra_rss")
        if phase == "cold":
            continue  # the same memory as a warm load
        settings.add("torch", f"{label}: {verb} peak RSS increase / tensor size",
                     f"{rss / MiB:.1f} MiB", rss / nbytes,
                     f"{native} {native_rss / MiB:.1f} MiB",
                     "<= 0.05x" if phase == "save" else "")
    bench_torch_model(settings)


MODEL_CHILD = """
import json, os, sys, time, torch
kind, layers, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
import ckpt
torch.manual_seed(0)
model = torch.nn.Sequential(*[torch.nn.Linear(1024, 512) for _ in range(layers)])  # 2 MiB each
keep = ckpt.ckpt(lambda model: None, name="modelbench")
# throughput, not first use: each writer once on a tiny model first (ckpt's first save
# imports its capture modules and makes the key, ~0.1 s; torch.save's zip writer)
keep(torch.nn.Linear(2, 2)) if kind == "ckpt" else torch.save(torch.nn.Linear(2, 2), target)
started = time.perf_counter()
if kind == "ckpt":
    keep(model)
else:
    torch.save(model, target)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def bench_torch_model(settings: Settings) -> None:
    """A model of many 2 MiB parameters (CPU): capture vs torch.save, each in a child."""
    layers, repeats = settings.size(128, 2), settings.size(5, 1)
    times: dict[str, list[float]] = {"ckpt": [], "torch": []}
    for run in range(repeats):
        for kind in times:
            os.sync()
            store = settings.workdir / f"store-model-{run}"
            target = settings.workdir / "model.pt"
            result = subprocess.run([sys.executable, "-c", MODEL_CHILD, kind, str(layers),
                                     str(target)], capture_output=True, text=True, check=True,
                                    env=fresh_env(store, PYCKPT_FSYNC="0"))
            times[kind].append(json.loads(result.stdout)["seconds"])
            shutil.rmtree(store, ignore_errors=True)
            target.unlink(missing_ok=True)
    ours, theirs = statistics.median(times["ckpt"]), statistics.median(times["torch"])
    settings.add("torch", f"model of {layers} x 2 MiB parameters: capture throughput vs "
                 "torch.save", f"{ours:.2f} s", theirs / ours, f"torch.save {theirs:.2f} s",
                 ">= 1.0x")


# -- 3c. data frames and Arrow tables --------------------------------------------------

TABLES_CHILD = """
import json, pickle, re, sys, time
library, kind, phase, rows, target = sys.argv[1:4] + [int(sys.argv[4]), sys.argv[5]]
import importlib, numpy, pyarrow as pa, pyarrow.compute as pc
import ckpt
importlib.import_module(library)  # before any timing, whichever reads or writes

def make():
    # numbers, tz-aware times, a category and short strings: ~34 bytes a row
    numbers = numpy.random.default_rng(0).standard_normal(rows)
    times = pa.array(numpy.arange(rows, dtype="int64") * 10**9, pa.timestamp("ns", "UTC"))
    words = pc.cast(pa.array(numpy.arange(rows) % 1000), pa.string())
    table = pa.table({"x": numbers, "n": numpy.arange(rows), "t": times,
                      "kind": pc.cast(pa.array(numpy.arange(rows) % 7), pa.string())
                      .dictionary_encode(), "word": words})
    if library == "pandas":
        import pandas
        frame = table.drop_columns(["kind", "word"]).to_pandas()  # numpy-backed
        frame["kind"] = pandas.Categorical.from_codes(numpy.arange(rows) % 7, list("abcdefg"))
        frame["word"] = pandas.array(words, dtype="str")  # Arrow-backed
        return frame
    if library == "polars":
        import polars
        return polars.from_arrow(table)
    return table

def save(data):
    if kind == "ckpt":
        ckpt.ckpt(lambda data: None, name="tablesbench")(data)
    elif kind == "pickle":
        with open(target, "wb") as file:
            pickle.dump(data, file, protocol=5)
    elif library == "pandas":
        data.to_parquet(target, compression=None)
    elif library == "polars":
        data.write_ipc(target, compression="uncompressed")
    else:
        with pa.ipc.new_file(target, data.schema) as writer:
            writer.write_table(data)

def load():
    if kind == "ckpt":
        return ckpt.load("tablesbench").arguments["data"]
    if kind == "pickle":
        with open(target, "rb") as file:
            return pickle.load(file)
    if library == "pandas":
        import pandas
        return pandas.read_parquet(target)
    if library == "polars":
        import polars
        return polars.read_ipc(target)
    with pa.OSFile(target) as file:  # read, not memory-mapped: as the others do
        return pa.ipc.open_file(file).read_all()

data = make() if phase == "save" else None
nbytes = 0 if data is None else int(
    data.memory_usage(deep=False).sum() if library == "pandas" else data.nbytes
    if library == "pyarrow" else data.estimated_size())
def kib(field):
    with open("/proc/self/status") as status:
        return int(re.search(field + r":\\s+(\\d+)", status.read()).group(1)) * 1024

# Making the data peaked higher than it ends: the peak restarts from here (Linux).
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
base = kib("VmRSS")
started = time.perf_counter()
if phase == "save":
    save(data)
else:
    data = load()
elapsed = time.perf_counter() - started
peak = kib("VmHWM")
assert len(data) == rows
print(json.dumps({"seconds": elapsed, "extra_rss": peak - base, "nbytes": nbytes}))
"""

# The library's own fastest writer and reader, uncompressed: what each is compared with.
TABLES_NATIVE = {"pandas": "to_parquet/read_parquet", "pyarrow": "pyarrow.ipc file",
                 "polars": "write_ipc/read_ipc"}


def _tables_once(settings: Settings, library: str, kind: str, rows: int) -> dict[str, dict]:
    """Save then load one frame or table with ckpt, pickle or the library, each in a child."""
    target = settings.workdir / "table.bin"
    store = settings.workdir / "store-tables"
    env = fresh_env(store, PYCKPT_FSYNC="0", PYCKPT_MAX_BYTES=str(1 << 40))
    results = {}
    for phase in ("save", "load"):
        os.sync()  # no dirty pages of the last run left to throttle this one
        result = subprocess.run([sys.executable, "-c", TABLES_CHILD, library, kind, phase,
                                 str(rows), str(target)], capture_output=True, text=True,
                                env=env, check=True)
        results[phase] = json.loads(result.stdout)
    shutil.rmtree(store, ignore_errors=True)
    target.unlink(missing_ok=True)
    return results


def bench_tables(settings: Settings) -> None:
    """A ~1 GiB pandas frame, pyarrow table and polars frame: ckpt vs pickle vs the library."""
    missing = [name for name in ("pandas", "pyarrow", "polars") if not _installed(name)]
    if missing:
        print(f"  ({', '.join(missing)} not installed: skipped)")
        return
    rows, repeats = settings.size(32 * MiB, 128 * 1024), settings.size(3, 1)
    for library in ("pandas", "pyarrow", "polars"):
        runs: dict[str, list[dict[str, dict]]] = {"ckpt": [], "pickle": [], "native": []}
        for _ in range(repeats):
            for kind in runs:
                runs[kind].append(_tables_once(settings, library, kind, rows))

        def median(kind: str, phase: str, what: str) -> float:
            return statistics.median(run[phase][what] for run in runs[kind])  # noqa: B023

        nbytes = runs["ckpt"][0]["save"]["nbytes"]
        label = f"{nbytes / MiB:.0f} MiB {library} {'table' if library == 'pyarrow' else 'frame'}"
        for phase, verb in (("save", "capture"), ("load", "ckpt.load")):
            ours = median("ckpt", phase, "seconds")
            for other, name in (("pickle", "pickle protocol 5"),
                                ("native", TABLES_NATIVE[library])):
                theirs = median(other, phase, "seconds")
                settings.add("tables", f"{label}: {verb} time / {name}", f"{ours:.2f} s",
                             ours / theirs, f"{name} {theirs:.2f} s")
        rss = median("ckpt", "save", "extra_rss")
        settings.add("tables", f"{label}: capture peak RSS increase / frame size",
                     f"{rss / MiB:.1f} MiB", rss / nbytes,
                     f"pickle {median('pickle', 'save', 'extra_rss') / MiB:.1f} MiB")


# -- 4. replay start -----------------------------------------------------------------

TRIVIAL_MODULE = """
import ckpt

@ckpt.ckpt
def trivial(x):
    return x + 1

@ckpt.ckpt(name="big")
def big(a):
    return float(a[0])
"""


def bench_replay(settings: Settings) -> None:
    """`cdip run --mode run` of a trivial function against running it directly."""
    project = settings.workdir / "replay"
    project.mkdir()
    (project / "benchmod.py").write_text(TRIVIAL_MODULE)
    store = project / "store"
    env = fresh_env(store)
    subprocess.run([sys.executable, "-c", "import benchmod; benchmod.trivial(1)"],
                   cwd=project, env=env, check=True)
    cdip = str(BIN / "cdip")

    def run(command: list[str]) -> Callable[[], object]:
        return lambda: subprocess.run(command, cwd=project, env=env, check=False,
                                      capture_output=True)

    repeats = settings.size(15, 2)
    times = side_by_side({
        "direct": run([sys.executable, "-c", "import benchmod; benchmod.trivial.__wrapped__(1)"]),
        "replay": run([cdip, "run", "trivial", "--mode", "run"]),
    }, repeats)
    settings.add("replay", "cdip run --mode run, trivial function", f"{times['replay']*1e3:.0f} ms",
                 times["replay"] / times["direct"],
                 f"python -c 'import mod; mod.f(1)' ({times['direct']*1e3:.0f} ms)", "<= 1.5x")
    _replay_imports(settings, project, env)
    nbytes = settings.size(1 << 30, 4 * MiB)
    subprocess.run([sys.executable, "-c", "import benchmod, numpy; "
                    f"benchmod.big(numpy.ones({nbytes // 8}))"], cwd=project, env=env, check=True)
    numpy.save(project / "big.npy", numpy.ones(nbytes // 8))
    replay = run([cdip, "run", "big", "--mode", "run"])

    def cold() -> object:  # as the first replay after a reboot: no verification record
        shutil.rmtree(store / ".verified", ignore_errors=True)
        return replay()

    big_times = side_by_side({
        "np.load": run([sys.executable, "-c", "import numpy, benchmod; "
                        "benchmod.big.__wrapped__(numpy.load('big.npy'))"]),
        "replay": replay, "cold": cold,
    }, settings.size(5, 1))
    for case, how in (("replay", "warm: record from capture"), ("cold", "cold: no record")):
        settings.add("replay", f"cdip run --mode run, {nbytes // MiB} MiB argument ({how})",
                     f"{big_times[case] * 1e3:.0f} ms", big_times[case] / big_times["np.load"],
                     f"python + np.load ({big_times['np.load'] * 1e3:.0f} ms)", "<= 1.2x")


# -- 5b. every buffer stored once, and loaded verified ---------------------------------

DEDUP_CHILD = """
import json, os, sys, time, numpy, ckpt
case, nbytes, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def wchar():  # bytes this process handed to write(2): what it wrote, cache or not
    with open("/proc/self/io") as io:
        return int(next(l.split()[1] for l in io if l.startswith("wchar:")))

@ckpt.ckpt(name="dedup", active=False, keep=20)
def step(data):
    total = float(data[:8].sum())
    raise ValueError(f"bad step {total}")

@ckpt.ckpt(name="reference", keep=20)
def use(reference, n):
    return n

if case in ("error", "ten", "np.save"):  # a load starts from nothing in memory
    data = numpy.random.default_rng(1 if case == "ten" else 0).random(nbytes // 8)
started, before = time.perf_counter(), wchar()
if case == "error":
    try:
        step(data)
    except ValueError:
        pass
elif case == "ten":
    for n in range(10):
        use(data, n)
elif case == "ckpt.load":
    loaded = ckpt.load("dedup").arguments["data"]
elif case == "np.save":
    numpy.save(target, data)
elif case == "np.load":
    loaded = numpy.load(target)
seconds = time.perf_counter() - started
if case.endswith(".load"):  # a mapped blob is read only when used: use every byte once
    float(loaded.sum())
print(json.dumps({"seconds": seconds, "written": wchar() - before,
                  "used": time.perf_counter() - started}))
"""


def bench_dedup(settings: Settings) -> None:
    """Each buffer stored once (argument and local; ten calls), and loaded vs np.load."""
    nbytes = settings.size(1 << 30, 4 * MiB)
    store = settings.workdir / "store"
    target = settings.workdir / "data.npy"
    env = fresh_env(store, PYCKPT_MAX_BYTES=str(16 * nbytes + (1 << 30)))

    def child(case: str) -> dict:
        os.sync()  # no dirty pages of the last run left to throttle this one
        result = subprocess.run([sys.executable, "-c", DEDUP_CHILD, case, str(nbytes),
                                 str(target)], capture_output=True, text=True, env=env,
                                check=True)
        return json.loads(result.stdout)

    label = f"{nbytes / MiB:.0f} MiB"
    saved = child("error")
    stored = sum(path.stat().st_size for path in store.rglob("*") if path.is_file())
    settings.add("dedup", f"active=False error, {label} argument: bytes written / distinct",
                 f"{saved['written'] / MiB:.0f} MiB", saved["written"] / nbytes,
                 f"{label} distinct (store holds {stored / MiB:.0f} MiB; "
                 "format 3 wrote 2.0x)", "<= 1.05x")
    ten = child("ten")
    settings.add("dedup", f"ten calls with one {label} array: bytes written / array",
                 f"{ten['written'] / MiB:.0f} MiB", ten["written"] / nbytes,
                 f"{label} array (format 3 wrote 10x)", "<= 1.05x")
    child("np.save")
    runs: dict[str, list[dict]] = {"ckpt.load": [], "cold": [], "np.load": []}
    for _ in range(settings.size(5, 1)):
        for case in runs:
            if case == "cold":  # as the first load after a reboot: no verification record
                shutil.rmtree(store / ".verified", ignore_errors=True)
            runs[case].append(child("ckpt.load" if case == "cold" else case))

    def median(case: str, what: str) -> float:
        return statistics.median(run[what] for run in runs[case])

    for case, how in (("ckpt.load", "warm: a verification record"),
                      ("cold", "cold: no record, hashed")):
        for what, then, reference in (("seconds", "", "np.load"),
                                      ("used", ", then every byte read", "np.load + sum")):
            ours, theirs = median(case, what), median("np.load", what)
            settings.add("dedup", f"ckpt.load of a {label} argument ({how}{then}) / {reference}",
                         f"{ours * 1e3:.0f} ms", ours / theirs,
                         f"{reference} {theirs * 1e3:.0f} ms", "<= 1.2x")
    shutil.rmtree(store, ignore_errors=True)
    target.unlink(missing_ok=True)


def _import_times(stderr: str) -> dict[str, float]:
    """Module name to its own import time in seconds, from `-X importtime` output."""
    times = {}
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self [us]" not in line:
            own, _, name = line.removeprefix("import time:").split("|")
            times[name.strip()] = int(own) / 1e6
    return times


def _replay_imports(settings: Settings, project: Path, env: dict[str, str]) -> None:
    """Where a replay's time goes: what the supervisor and the child import.

    Modules every interpreter imports at start-up (`python -c pass`) are left out.
    """
    from ckpt.supervise import RUNNER

    startup = _import_times(subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"],
                                           env=env, capture_output=True, text=True).stderr)

    cli = subprocess.run([sys.executable, "-X", "importtime", str(BIN / "cdip"), "run",
                          "trivial", "--mode", "run"], cwd=project, env=env,
                         capture_output=True, text=True, check=True)
    supervisor = {k: v for k, v in _import_times(cli.stderr).items() if k not in startup}
    forbidden = [m for m in ("cloudpickle", "psutil", "numpy", "benchmod") if m in supervisor]
    settings.add("replay", "cdip run: the supervisor's imports beyond python's own",
                 f"{sum(supervisor.values()) * 1e3:.0f} ms")
    settings.add("replay", "cdip run imports cloudpickle/psutil/numpy/user code",
                 ", ".join(forbidden) or "none")
    entry = json.loads(subprocess.run([str(BIN / "cdip"), "info", "--json"], cwd=project,
                                      env=env, capture_output=True, text=True,
                                      check=True).stdout)[0]
    options = json.dumps({"store": str(project / "store"), "id": entry["id"], "mode": "run"})
    child = subprocess.run([sys.executable, "-X", "importtime", *RUNNER, options], cwd=project,
                           env={**env, "PYCKPT_DISABLE": "1"}, capture_output=True, text=True,
                           check=True)
    runner = {k: v for k, v in _import_times(child.stderr).items() if k not in startup}
    ours = sum(t for name, t in runner.items() if name != "benchmod" and "ckpt" in name)
    settings.add("replay", "replay child: its imports beyond python's own",
                 f"{sum(runner.values()) * 1e3:.0f} ms, {ours * 1e3:.0f} ms in ckpt's modules")


# -- 5. listing at scale -------------------------------------------------------------


def _fill(store: Path, count: int) -> None:
    code = textwrap.dedent(f"""
        import ckpt
        functions = [ckpt.ckpt(lambda x: x, name=f"step{{i}}", keep=10**9) for i in range(20)]
        for i in range({count}):
            functions[i % 20](i)
    """)
    subprocess.run([sys.executable, "-c", code], env=fresh_env(store,
                   PYCKPT_MAX_BYTES=str(1 << 40)), check=True)


def bench_listing(settings: Settings) -> None:
    """`cdip info` over 1,000 to 10,000 checkpoints; `cdip info NAME` as the store grows."""
    cdip = str(BIN / "cdip")
    counts = [settings.size(n, n // 100) for n in (1000, 5000, 10000)]
    store = settings.workdir / "listing"
    filled = 0
    first = None
    for count in counts:
        _fill(store, count - filled)
        filled = count
        env = fresh_env(store)
        times = side_by_side({
            "info": lambda env=env: subprocess.run([cdip, "info"], env=env,
                                                   capture_output=True, check=True),
            "name": lambda env=env: subprocess.run([cdip, "info", "step7"], env=env,
                                                   capture_output=True, check=True),
        }, settings.size(5, 1))
        per = times["info"] / count
        first = first or (times["info"], times["name"], count)
        settings.add("listing", f"cdip info, {count} checkpoints", f"{times['info']*1e3:.0f} ms",
                     times["info"] / 1.0, "1 s", "<= 1x")
        settings.add("listing", f"  per checkpoint, {count} checkpoints", f"{per*1e6:.0f} us",
                     times["info"] / first[0] / (count / first[2]),
                     f"per checkpoint at {first[2]}")
        settings.add("listing", f"cdip info NAME, {count} checkpoints",
                     f"{times['name']*1e3:.0f} ms", times["name"] / first[1],
                     f"at {first[2]} checkpoints")


# -- 6. start-up ---------------------------------------------------------------------


def bench_startup(settings: Settings) -> None:
    """`import ckpt` and the listing commands, against `python -c pass`."""
    store = settings.workdir / "empty"
    env = fresh_env(store)
    cdip = str(BIN / "cdip")

    def run(command: list[str]) -> Callable[[], object]:
        return lambda: subprocess.run(command, env=env, capture_output=True, check=True)

    times = side_by_side({
        "pass": run([sys.executable, "-c", "pass"]),
        "import": run([sys.executable, "-c", "import ckpt"]),
        "help": run([cdip, "--help"]),
        "info": run([cdip, "info"]),
    }, settings.size(30, 2))
    base = times["pass"]
    settings.add("startup", "python -c pass", f"{base*1e3:.1f} ms")
    added = times["import"] - base
    settings.add("startup", "import ckpt: added to start-up", f"{added * 1e3:.1f} ms",
                 added / 0.010, "10 ms", "<= 1x")
    for name, label in (("help", "cdip --help"), ("info", "cdip info, empty store")):
        settings.add("startup", f"{label}", f"{times[name]*1e3:.1f} ms", times[name] / 0.050,
                     "50 ms", "<= 1x")
        settings.add("startup", f"{label} vs python -c pass", "", times[name] / base,
                     "python -c pass", "<= 3x")
    heavy = subprocess.run([cdip, "info"], env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
                           capture_output=True, text=True, check=True).stderr
    imported = {line.split("|")[-1].strip() for line in heavy.splitlines()[1:]}
    avoided = [m for m in ("cloudpickle", "psutil", "platformdirs", "numpy") if m in imported]
    settings.add("startup", "cdip info imports cloudpickle/psutil/platformdirs/numpy",
                 ", ".join(avoided) or "none")


# -- 7. zero-code capture ------------------------------------------------------------


def bench_zerocode(settings: Settings) -> None:
    """`python -m ckpt run script.py` against `python script.py`: start-up, and a crash saved."""
    script = settings.workdir / "zerocode_ok.py"
    script.write_text("print('done')\n")
    crash = ROOT / "tests" / "samples" / "zerocode" / "pipeline3.py"
    env = fresh_env(settings.workdir / "zerocode-store", PYCKPT_KEEP="1")

    def run(*command: str) -> Callable[[], object]:
        return lambda: subprocess.run([sys.executable, *command], env=env, capture_output=True,
                                      cwd=settings.workdir)

    times = side_by_side({
        "plain": run(str(script)), "ours": run("-m", "ckpt", "run", str(script)),
        "crash": run(str(crash), "3,x,5"),
        "saved": run("-m", "ckpt", "run", str(crash), "3,x,5"),
    }, settings.size(20, 2))
    settings.add("zerocode", "python script.py (no error)", f"{times['plain']*1e3:.1f} ms")
    added = times["ours"] - times["plain"]
    settings.add("zerocode", "python -m ckpt run script.py: added to start-up",
                 f"{added*1e3:.1f} ms", times["ours"] / times["plain"], "python script.py")
    saving = times["saved"] - times["crash"]
    settings.add("zerocode", "a crash 3 frames deep: 3 checkpoints saved, added",
                 f"{saving*1e3:.1f} ms", times["saved"] / times["crash"], "python script.py")


REMOTE_CHILD = """
import json, os, sys, time
import numpy as np
import ckpt


@ckpt.ckpt(active=False)
def train(batch):
    if os.environ.get("BENCH_FAIL"):
        raise ValueError("diverged")
    return int(batch[:4096].sum())  # replayed: the argument fetched, verified, loaded


def main(case, nbytes, url):
    data = np.random.default_rng(7).integers(0, 255, nbytes, dtype=np.uint8)
    if case == "ckpt":
        started = time.perf_counter()
        try:
            train(data)
        except ValueError:
            pass
        return {"seconds": time.perf_counter() - started}
    import s3fs  # the same bytes through s3fs's own upload, from a file as it needs them

    path = os.path.join(os.environ["BENCH_TMP"], "data.bin")
    data.tofile(path)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    started = time.perf_counter()
    fs.put_file(path, url + "/reference.bin")
    put = time.perf_counter() - started
    os.unlink(path)
    started = time.perf_counter()
    fs.get_file(url + "/reference.bin", path)
    got = time.perf_counter() - started
    os.unlink(path)
    return {"seconds": put, "get": got}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), sys.argv[3])))
"""

def _blob_uploads(log: str) -> int:
    """The requests that sent a blob's bytes (a PUT, or a multipart upload's parts)."""
    return sum(1 for line in log.splitlines()
               if "PUT /bench/store/blobs/" in line or "POST /bench/store/blobs/" in line)


def bench_remote(settings: Settings) -> None:
    """A store at s3:// (moto's server on loopback): capture, re-capture, replay vs s3fs."""
    sys.path.insert(0, str(ROOT / "tests"))
    from s3server import S3Server

    nbytes = settings.size(1 << 30, 4 * MiB)
    label = f"{nbytes / MiB:.0f} MiB"
    server = S3Server(settings.workdir / "s3").start()
    try:
        server.make_bucket("bench")
        url = "s3://bench/store"
        env = {**fresh_env(settings.workdir / "unused"), **server.env, "PYCKPT_DIR": url,
               "BENCH_TMP": str(settings.workdir), "PYCKPT_KEY": os.urandom(32).hex()}
        program = settings.workdir / "remote_step.py"  # a file: its function replays
        program.write_text(REMOTE_CHILD)

        def child(case: str) -> dict:
            result = subprocess.run([sys.executable, str(program), case, str(nbytes),
                                     "s3://bench/ref"], capture_output=True, text=True,
                                    env={**env, "BENCH_FAIL": "1"}, check=True,
                                    cwd=settings.workdir)
            return json.loads(result.stdout.strip().splitlines()[-1])

        ours, theirs = child("ckpt"), child("s3fs")
        settings.add("remote", f"capture of a {label} argument to S3 / s3fs put_file",
                     f"{ours['seconds']:.2f} s", ours["seconds"] / theirs["seconds"],
                     f"s3fs {theirs['seconds']:.2f} s", "<= 1.11x")
        log = server.log.read_text(errors="replace")
        child("ckpt")  # the same argument again: its blob is there
        again = server.log.read_text(errors="replace")[len(log):]
        settings.add("remote", f"re-capture of the unchanged {label} argument: blob uploads",
                     str(_blob_uploads(again)), None,
                     f"first capture: {_blob_uploads(log)} (target: none again)")
        env["XDG_CACHE_HOME"] = str(settings.workdir / "cache")
        replays = {}
        for case in ("cold", "warm"):
            if case == "cold":
                shutil.rmtree(settings.workdir / "cache", ignore_errors=True)
            started = time.perf_counter()
            done = subprocess.run([str(BIN / "cdip"), "run", "train", "--mode", "run"], env=env,
                           cwd=settings.workdir, capture_output=True, check=False)
            replays[case] = time.perf_counter() - started
            if done.returncode != 0:
                raise RuntimeError(f"the replay failed: {done.stderr.decode()[-600:]}")
        for case, seconds in replays.items():
            settings.add("remote", f"cdip run of a {label} argument from S3, {case} cache / "
                         "s3fs get_file", f"{seconds:.2f} s", seconds / theirs["get"],
                         f"s3fs get {theirs['get']:.2f} s")
    finally:
        server.stop()


BENCHMARKS = {"idle": bench_idle, "small": bench_small, "large": bench_large,
              "torch": bench_torch, "tables": bench_tables, "replay": bench_replay,
              "listing": bench_listing, "startup": bench_startup,
              "zerocode": bench_zerocode, "dedup": bench_dedup, "remote": bench_remote}


def machine() -> str:
    """What the figures were measured on."""
    import psutil

    cpu = platform.processor() or platform.machine()
    return (f"{platform.platform()}, {psutil.cpu_count()} cores ({cpu}), "
            f"{psutil.virtual_memory().total / 1024**3:.0f} GiB RAM, Python "
            f"{platform.python_version()}, numpy {numpy.__version__}")


def write_markdown(rows: list[Row], path: Path) -> None:
    """BENCHMARKS.md: the table, the machine, how to reproduce, and the notes file."""
    lines = [
        "# Benchmarks", "",
        "Every ratio is measured side by side in one run against the reference named next to",
        "it (medians of interleaved repeats): the machines are shared and noisy, so absolute",
        "times from different runs are not comparable. Reproduce with `scripts/bench` (all)",
        "or `scripts/bench NAME` (one of: " + ", ".join(BENCHMARKS) + ").", "",
        f"Machine: {machine()}. Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
        "| benchmark | measure | value | ratio | against | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        lines.append(f"| {row.benchmark} | {row.what.strip()} | {row.value} | {ratio} | "
                     f"{row.reference} | {row.target} | {row.met} |")
    notes = path.with_name("BENCHMARKS.notes.md")
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmarks (default: all)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; one of {', '.join(BENCHMARKS)}")
    settings = Settings(tiny=args.tiny)
    # Start-up is measured as users see it: from bytecode, not compiling our modules.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "ckpt"),
                    str(ROOT / "runner")], check=True)
    with tempfile.TemporaryDirectory(prefix="ckpt-bench-", dir=ROOT) as workdir:
        for name in args.names or BENCHMARKS:
            settings.workdir = Path(workdir) / name
            settings.workdir.mkdir()
            print(f"== {name}: {BENCHMARKS[name].__doc__}", flush=True)
            BENCHMARKS[name](settings)
    if not args.names and not args.tiny and not args.no_write:
        write_markdown(settings.rows, ROOT / "BENCHMARKS.md")
        print(f"wrote {ROOT / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
