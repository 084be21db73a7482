"""Large arrays, many writers, failing saves and the idle path."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import threading
import warnings

import numpy
import pytest

import ckpt
import ckpt.capture
import ckpt.values
from ckpt.store import Store


def test_a_large_array_round_trips_exactly(store):
    rng = numpy.random.default_rng(7)
    array = rng.standard_normal(13_500_000)  # 108 MB of float64
    matrix = numpy.asfortranarray(rng.integers(0, 255, (1000, 3000), dtype=numpy.uint8))

    @ckpt.ckpt
    def analyse(data, image, label="x"):
        return float(data.sum())

    analyse(array, matrix)
    loaded = ckpt.load()
    numpy.testing.assert_array_equal(loaded.arguments["data"], array)
    numpy.testing.assert_array_equal(loaded.arguments["image"], matrix)
    assert loaded.arguments["data"].dtype == numpy.float64
    assert loaded.arguments["image"].flags.f_contiguous
    assert loaded.arguments["data"].flags.aligned
    size = ckpt.checkpoints()[-1].size
    assert array.nbytes + matrix.nbytes < size < array.nbytes + matrix.nbytes + 64 * 1024


def _write_many(args: tuple[str, int, int]) -> list[str]:
    directory, worker, count = args
    os.environ["PYCKPT_DIR"] = directory
    import ckpt as worker_ckpt

    @worker_ckpt.ckpt(name="shared", keep=3)
    def job(worker_id, i, payload):
        return i

    def calls(thread: int) -> None:
        for i in range(thread, count, 3):
            job(worker, i, numpy.full(20_000, worker * 1000 + i))

    threads = [threading.Thread(target=calls, args=(t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return []


def test_concurrent_writers_from_a_process_pool_each_with_threads(store):
    context = multiprocessing.get_context("spawn")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with context.Pool(4) as pool:
            pool.map(_write_many, [(str(store), worker, 15) for worker in range(4)])
    entries = Store(store).entries()
    # keep=3, plus calls a retention pass spared as in flight in its own process (at
    # most 3 threads x 4 workers); the exact count is checked after a last save below
    assert 1 <= len(entries) <= 3 + 12
    assert len({entry.id for entry in entries}) == len(entries)
    for entry in entries:
        assert entry.problem is None
        loaded = ckpt.load(entry.id)
        worker, i = loaded.arguments["worker_id"], loaded.arguments["i"]
        numpy.testing.assert_array_equal(loaded.arguments["payload"],
                                         numpy.full(20_000, worker * 1000 + i))
    assert not [p for p in os.listdir(store) if p.startswith(".tmp")]
    # once every writer is done, one more save brings retention back to exactly keep
    _write_many((str(store), 9, 1))
    assert len(Store(store).entries()) == 3


def test_concurrent_threads(store):
    @ckpt.ckpt(keep=100)
    def work(i):
        return i

    threads = [threading.Thread(target=lambda k=k: [work(k * 10 + j) for j in range(10)])
               for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    entries = ckpt.checkpoints()
    assert sorted(ckpt.load(e.id).args[0] for e in entries) == list(range(80))


READ_ONLY_PROGRAM = """
import warnings, ckpt
warnings.simplefilter("always")

@ckpt.ckpt
def f(x):
    if x < 0:
        raise ValueError("negative")
    return x * 2

print("result", f(2))
try:
    f(-1)
except ValueError as exc:
    print("raised", exc)
"""


def test_read_only_store_warns_and_changes_nothing(store, tmp_path):
    store.mkdir()
    if os.geteuid() != 0:
        store.chmod(stat.S_IRUSR | stat.S_IXUSR)
        command = [sys.executable, "-c", READ_ONLY_PROGRAM]
    else:
        # root writes through file modes: mount a real read-only file system instead
        command = ["unshare", "-rm", "sh", "-c",
                   f'mount -t tmpfs -o ro,mode=0700 tmpfs "{store}" && exec "$0" -c "$1"',
                   sys.executable, READ_ONLY_PROGRAM]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    store.chmod(0o700)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["result 4", "raised negative"]
    assert result.stderr.count("CkptWarning: ckpt: could not save") == 2
    assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr
    assert os.listdir(store) == []


def test_a_missing_store_is_created_private(tmp_path, monkeypatch):
    target = tmp_path / "not" / "yet" / "there"
    monkeypatch.setenv("PYCKPT_DIR", str(target))
    ckpt.ckpt(lambda x: x)(3)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert ckpt.load().args == (3,)


def test_store_path_that_is_a_file_warns_and_changes_nothing(store):
    store.write_text("not a directory")

    @ckpt.ckpt
    def f(x):
        if x < 0:
            raise ValueError("negative")
        return x * 2

    with pytest.warns(ckpt.CkptWarning, match="could not save"):
        assert f(2) == 4
    sentinel = ValueError("negative")

    @ckpt.ckpt
    def g():
        raise sentinel

    with pytest.warns(ckpt.CkptWarning), pytest.raises(ValueError) as caught:
        g()
    assert caught.value is sentinel
    assert store.read_text() == "not a directory"


def test_a_save_that_fails_midway_leaves_nothing_behind(store, monkeypatch):
    def broken_write(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.fileformat.PartWriter, "write_record", broken_write)

    @ckpt.ckpt(active=False)
    def f(x):
        raise KeyError(x)

    with pytest.warns(ckpt.CkptWarning, match="No space left"), pytest.raises(KeyError):
        f(1)
    assert os.listdir(store) == []


def test_unpicklable_everything_still_returns_and_raises_as_undecorated(store):
    class Hostile:
        def __reduce__(self):
            raise RuntimeError("never pickle me")

        def __repr__(self):
            raise RuntimeError("never repr me")

    @ckpt.ckpt
    def f(a, b):
        local = Hostile()  # noqa: F841 (saved with the locals)
        raise ValueError("user error")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="user error"):
            f(Hostile(), lambda: threading.Lock())
    checkpoint = ckpt.load()
    assert isinstance(checkpoint.arguments["a"], ckpt.Unpicklable)
    assert "never pickle me" in checkpoint.arguments["a"].error
    assert "Hostile" in checkpoint.arguments["a"].repr
    assert isinstance(checkpoint.locals["local"], ckpt.Unpicklable)


def test_idle_path_never_pickles_or_writes(store, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the idle path pickled something")

    monkeypatch.setattr(ckpt.values, "pickle_value", forbidden)
    monkeypatch.setattr(ckpt.capture, "pickle_value", forbidden)
    monkeypatch.setattr(ckpt.capture, "save_call", forbidden)
    big = numpy.zeros(1000)

    @ckpt.ckpt(active=False)
    def f(x):
        return x.sum()

    for _ in range(100):
        assert f(big) == 0
    assert not store.exists()


def test_disabled_by_environment_costs_no_pickling(tmp_path):
    from conftest import run_python

    code = (
        "import ckpt, ckpt.capture\n"
        "ckpt.capture.save_call = ckpt.capture.save_error = None\n"
        "@ckpt.ckpt\n"
        "def f(x):\n"
        "    if x: raise ValueError(x)\n"
        "    return 0\n"
        "assert not ckpt.is_enabled()\n"
        "assert f(0) == 0\n"
        "f(1)\n"
    )
    result = run_python("-c", code, env={"PYCKPT_DISABLE": "1"})
    assert result.returncode == 1
    assert result.stderr.strip().endswith("ValueError: 1")
    assert not (tmp_path / "store").exists()


def test_import_ckpt_is_cheap():
    from conftest import run_python

    result = run_python("-X", "importtime", "-c", "import ckpt", check=True)
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()[1:]}
    for heavy in ("cloudpickle", "psutil", "platformdirs", "numpy", "importlib.metadata",
                  "hashlib", "ast"):
        assert heavy not in imported, f"`import ckpt` imports {heavy}"
    total_us = sum(int(line.split("|")[1]) for line in result.stderr.splitlines()[1:]
                   if line.split("|")[-1].strip() == "ckpt")
    assert total_us < 50_000, f"`import ckpt` took {total_us} us"


def test_listing_starts_without_heavy_imports(store):
    from conftest import BIN

    ckpt.ckpt(lambda x: x)(1)
    result = subprocess.run([str(BIN / "cdip"), "info"], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "ckpt.store" in imported  # the measurement saw our imports
    # each of these cost `cdip` several milliseconds here; none is needed to list
    # (hashlib is: since format 3 listing verifies each summary's HMAC)
    for heavy in ("cloudpickle", "psutil", "numpy", "pathlib", "typing",
                  "shutil", "datetime", "subprocess"):
        assert heavy not in imported, f"`cdip info` imports {heavy}"


def test_python_version_floor_is_declared():
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.9"
    assert sys.version_info >= (3, 9)


def test_a_broken_installation_is_a_warning_not_an_error(tmp_path):
    from conftest import run_python

    code = (
        "import sys, ckpt\n"
        "sys.modules['ckpt.capture'] = None  # importing it now fails, as if broken\n"
        "@ckpt.ckpt\n"
        "def f(x):\n"
        "    if x: raise ValueError('theirs')\n"
        "    return 5\n"
        "print(f(0))\n"
        "f(1)\n"
    )
    result = run_python("-c", code)
    assert result.returncode == 1
    assert result.stdout.strip() == "5"
    assert "CkptWarning: ckpt: cannot save checkpoints: ModuleNotFoundError" in result.stderr
    assert "During handling" not in result.stderr  # their exception, not chained to ours
    assert result.stderr.strip().endswith("ValueError: theirs")
