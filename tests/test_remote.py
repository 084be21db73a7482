"""A store at an S3 URL, end to end against a real S3 API server (moto's, on loopback).

A program fails in one process saving into s3://bucket/prefix; another process,
with another HOME and cache but the same key, lists, shows and replays it with
edited code, fetching its blobs once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import s3server
from s3server import BUCKET, S3Server

s3_server = s3server.s3_server
s3_env = s3server.s3_env

SAMPLE = Path(__file__).parent / "samples" / "remote_step.py"
KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
CDIP = [os.path.join(os.path.dirname(sys.executable), "cdip")]


@pytest.fixture
def remote(s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh prefix of the test bucket as the store, and a key both machines share."""
    url = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    monkeypatch.setenv("PYCKPT_DIR", url)
    monkeypatch.setenv("PYCKPT_KEY", KEY)
    return url


def machine(tmp_path: Path, name: str) -> dict[str, str]:
    """Another machine's HOME and cache (its own blob cache, its own key file path)."""
    home = tmp_path / name
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_CONFIG_HOME": str(home / "config"), "XDG_STATE_HOME": str(home / "state")}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **env})


def worker_fails(tmp_path: Path) -> Path:
    """Run the sample on 'the worker': it fails, saving into the store; return its copy."""
    work = tmp_path / "job"
    work.mkdir()
    script = work / "remote_step.py"
    shutil.copy(SAMPLE, script)
    result = run([sys.executable, str(script)], machine(tmp_path, "worker"), work)
    assert result.returncode == 1, result.stderr
    assert result.stderr.rstrip().endswith("ZeroDivisionError: float division by zero")
    assert "CkptWarning" not in result.stderr, result.stderr
    return script


def bucket(code: str, url: str) -> str:
    """Run s3fs code on the bucket in a subprocess (`fs`, `url` given); return its output.

    Not in this process: fsspec reads its endpoint setting once, when first imported,
    and other test files talk to servers of their own.
    """
    prelude = ("import sys, s3fs; fs = s3fs.S3FileSystem(skip_instance_cache=True); "
               "url = sys.argv[1]\n")
    result = subprocess.run([sys.executable, "-c", prelude + code, url], capture_output=True,
                            text=True, timeout=60, check=True)
    return result.stdout


def requests(server: S3Server, pattern: str) -> int:
    """How many requests the server logged whose line matches `pattern`."""
    return len(re.findall(pattern, server.log.read_text(errors="replace")))


def test_a_failure_on_a_worker_is_replayed_elsewhere_with_edited_code(remote, s3_server,
                                                                      tmp_path):
    script = worker_fails(tmp_path)
    laptop, elsewhere = machine(tmp_path, "laptop"), tmp_path / "elsewhere"
    elsewhere.mkdir()
    listing = run([*CDIP, "info"], laptop, elsewhere)
    assert listing.returncode == 0, listing.stderr
    assert f"store: {remote} (1 checkpoint(s), 4.0 MiB)" in listing.stdout
    assert re.search(r"scale +error .*ZeroDivisionError", listing.stdout), listing.stdout
    shown = run([*CDIP, "info", "scale"], laptop, elsewhere)
    assert shown.returncode == 0, shown.stderr
    assert "batch" in shown.stdout and "ZeroDivisionError" in shown.stdout

    script.write_text(script.read_text().replace("total / factor", "total / (factor or 4.0)"))
    prefix = remote.split("/", 3)[3]
    blob_gets = rf"GET /{BUCKET}/{prefix}/blobs/"
    before = requests(s3_server, blob_gets)
    replay = run([*CDIP, "run", "scale", "--mode", "run"], laptop, elsewhere)
    assert replay.returncode == 0, replay.stderr
    assert f"scale returned {float(sum(range(1 << 19))) / 4.0}" in replay.stdout
    # `info scale` fetched the blob into the laptop's cache: the replay fetched nothing more
    assert requests(s3_server, blob_gets) == before

    again = run([*CDIP, "run", "scale", "--mode", "run"], laptop, elsewhere)
    assert again.returncode == 0 and "scale returned" in again.stdout, again.stderr
    assert requests(s3_server, blob_gets) == before  # the cache serves it, verified
    cache = Path(laptop["XDG_CACHE_HOME"]) / "pyckpt" / "remote"
    (copy,) = cache.iterdir()
    assert oct(copy.stat().st_mode & 0o777) == "0o700"


def test_a_cold_replay_fetches_the_blob_and_a_warm_one_nothing(remote, s3_server, tmp_path):
    worker_fails(tmp_path)
    prefix = remote.split("/", 3)[3]
    blob_gets = rf"GET /{BUCKET}/{prefix}/blobs/"
    laptop = machine(tmp_path, "laptop")
    before = requests(s3_server, blob_gets)
    replay = run([*CDIP, "run", "scale", "--mode", "run"], laptop, tmp_path)
    assert replay.returncode == 1 and "ZeroDivisionError" in replay.stdout + replay.stderr
    cold = requests(s3_server, blob_gets)
    assert cold > before  # ranged GETs of the one blob
    replay = run([*CDIP, "run", "scale", "--mode", "run"], laptop, tmp_path)
    assert replay.returncode == 1 and "ZeroDivisionError" in replay.stdout + replay.stderr
    assert requests(s3_server, blob_gets) == cold


def test_an_altered_blob_in_the_bucket_is_refused(remote, s3_server, tmp_path):
    worker_fails(tmp_path)
    bucket("(blob,) = fs.find(url + '/blobs'); data = bytearray(fs.cat_file(blob)); "
           "data[100] ^= 1; fs.pipe_file(blob, bytes(data))", remote)
    replay = run([*CDIP, "run", "scale", "--mode", "run"], machine(tmp_path, "laptop"), tmp_path)
    assert replay.returncode == 2, replay.stdout + replay.stderr
    assert ("Traceback" not in replay.stderr and "does not verify" in replay.stderr) or (
        "altered" in replay.stderr), replay.stderr


def test_rm_and_gc_work_on_the_url(remote, s3_server, tmp_path):
    worker_fails(tmp_path)
    laptop = machine(tmp_path, "laptop")
    gc = run([*CDIP, "gc"], laptop, tmp_path)
    assert gc.returncode == 0 and "removed 0 checkpoint(s)" in gc.stdout, gc.stderr
    removed = run([*CDIP, "rm", "scale"], laptop, tmp_path)
    assert removed.returncode == 0 and "removed" in removed.stdout, removed.stderr
    assert bucket("print(fs.find(url))", remote).strip() == "[]"  # its parts and its blob
    listing = run([*CDIP, "info"], laptop, tmp_path)
    assert "(0 checkpoint(s), 0 B)" in listing.stdout


def test_missing_credentials_one_line_for_cdip_and_a_warning_for_the_program(
        remote, s3_server, tmp_path, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    listing = run([*CDIP, "info"], machine(tmp_path, "laptop"), tmp_path)
    assert listing.returncode == 2
    assert listing.stderr.startswith(f"cdip: error: no credentials for the store {remote}")
    assert "Traceback" not in listing.stderr
    work = tmp_path / "job"
    work.mkdir()
    shutil.copy(SAMPLE, work / "remote_step.py")
    result = run([sys.executable, str(work / "remote_step.py")], machine(tmp_path, "w"), work)
    assert result.returncode == 1  # the program's own failure, unchanged
    assert result.stderr.rstrip().endswith("ZeroDivisionError: float division by zero")
    assert "CkptWarning: ckpt: could not save checkpoint 'scale'" in result.stderr
    assert "no credentials" in result.stderr


def test_a_url_without_its_library_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCKPT_DIR", "nosuchscheme://bucket/x")
    listing = run([*CDIP, "info"], machine(tmp_path, "laptop"), tmp_path)
    assert listing.returncode == 2, listing.stderr
    assert listing.stderr.startswith("cdip: error:") and "Traceback" not in listing.stderr


def test_pull_copies_a_checkpoint_with_its_buffers_into_a_local_store(remote, s3_server,
                                                                      tmp_path):
    worker_fails(tmp_path)
    laptop, local = machine(tmp_path, "laptop"), tmp_path / "local"
    pulled = run([*CDIP, "pull", "scale", "--to", str(local)], laptop, tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert re.fullmatch(rf"pulled [0-9a-f]{{12}}  scale  \(4\.0 MiB fetched\) into {local}\n",
                        pulled.stdout), pulled.stdout
    again = run([*CDIP, "pull", "scale", "--to", str(local)], laptop, tmp_path)
    assert "(0 B fetched)" in again.stdout, again.stdout + again.stderr
    # the local copy is a store of its own: listed and replayed with no server at all
    offline = {**laptop, "PYCKPT_DIR": str(local), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    listing = run([*CDIP, "info"], offline, tmp_path)
    assert "(1 checkpoint(s), 4.0 MiB)" in listing.stdout, listing.stdout + listing.stderr
    replay = run([*CDIP, "run", "scale", "--mode", "run"], offline, tmp_path)
    assert replay.returncode == 1 and "ZeroDivisionError" in replay.stdout + replay.stderr
    missing = run([*CDIP, "pull", "nothing", "--to", str(local)], laptop, tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith(
        "cdip: error: no checkpoint named 'nothing'"), missing.stderr


def test_without_fsspec_a_url_is_one_line_for_cdip_and_a_warning_for_the_program(
        remote, tmp_path):
    hidden = tmp_path / "no_fsspec"
    (hidden / "fsspec").mkdir(parents=True)
    (hidden / "fsspec" / "__init__.py").write_text("raise ImportError('No module named fsspec')\n")
    env = {**machine(tmp_path, "w"), "PYTHONPATH": str(hidden)}
    listing = run([*CDIP, "info"], env, tmp_path)
    assert listing.returncode == 2, listing.stderr
    assert listing.stderr.startswith(f"cdip: error: a store at a URL ({remote}) needs fsspec")
    assert "pip install 'ckpt[remote]'" in listing.stderr and "Traceback" not in listing.stderr
    code = ("import ckpt, sys\ntry:\n    ckpt.load(directory=sys.argv[1])\n"
            "except ckpt.CkptError as exc:\n    print(exc)")
    loaded = run([sys.executable, "-c", code, remote], env, tmp_path)
    assert loaded.stdout.startswith(f"a store at a URL ({remote}) needs fsspec"), (
        loaded.stdout + loaded.stderr)
    work = tmp_path / "job"
    work.mkdir()
    shutil.copy(SAMPLE, work / "remote_step.py")
    result = run([sys.executable, str(work / "remote_step.py")], env, work)
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("ZeroDivisionError: float division by zero")
    assert "CkptWarning: ckpt: could not save checkpoint 'scale'" in result.stderr
    assert "needs fsspec" in result.stderr


def test_a_checkpoint_signed_elsewhere_is_refused_then_replayed_once_with_trust(
        remote, s3_server, tmp_path, monkeypatch):
    worker_fails(tmp_path)  # signed with KEY
    laptop = machine(tmp_path, "laptop")
    other = {**laptop, "PYCKPT_KEY": "ff" * 32}
    listing = run([*CDIP, "info"], other, tmp_path)
    assert "signed under another key" in listing.stdout, listing.stdout + listing.stderr
    entry_id = re.search(r"^([0-9a-f]{12}) ", listing.stdout, re.MULTILINE).group(1)
    refused = run([*CDIP, "run", entry_id, "--mode", "run"], other, tmp_path)
    assert refused.returncode == 2 and "cannot be replayed" in refused.stderr, refused.stderr
    trusted = run([*CDIP, "run", entry_id, "--trust", "--mode", "run"], other, tmp_path)
    assert trusted.returncode == 1, trusted.stdout + trusted.stderr
    assert "ZeroDivisionError" in trusted.stdout + trusted.stderr


def test_a_dask_task_that_fails_on_a_worker_saves_into_s3_and_replays_on_the_laptop(
        remote, s3_env, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    code = tmp_path / "code"
    code.mkdir()
    step = code / "dask_step.py"
    shutil.copy(Path(__file__).parent / "samples" / "cluster" / "dask_step.py", step)
    worker_env = {**s3_env, **machine(tmp_path, "worker"), "PYCKPT_DIR": remote,
                  "PYCKPT_KEY": KEY}
    monkeypatch.syspath_prepend(str(code))
    monkeypatch.chdir(code)  # spawned workers start with our sys.path and directory
    with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1,
                                  dashboard_address=None, env=worker_env) as cluster, \
            distributed.Client(cluster) as client:
        import dask_step

        future = client.submit(dask_step.normalise, [3, -3], 2, pure=False)
        with pytest.raises(ZeroDivisionError):
            future.result(timeout=60)
        (worker,) = client.scheduler_info()["workers"].values()
    sys.modules.pop("dask_step", None)
    laptop = machine(tmp_path, "laptop")
    listing = run([*CDIP, "info"], laptop, tmp_path)
    assert re.search(r"normalise +dask " + re.escape(str(worker["name"])), listing.stdout), (
        listing.stdout + listing.stderr)
    step.write_text(step.read_text().replace("total = sum(batch)", "total = sum(batch) or 1"))
    replay = run([*CDIP, "run", "normalise", "--worker", str(worker["name"]), "--mode", "run"],
                 laptop, tmp_path)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "normalise returned [6.0, -6.0]" in replay.stdout, replay.stdout


def test_a_process_killed_while_it_saves_leaves_nothing_listed(remote, s3_server, tmp_path):
    code = Path(__file__).parent / "samples" / "cluster"
    worker = machine(tmp_path, "worker")
    killed = run([sys.executable, "-c", "import dask_step; dask_step.die_while_saving(3)"],
                 {**worker, "PYTHONPATH": str(code)}, tmp_path)
    assert killed.returncode == -9, killed.stderr
    listing = run([*CDIP, "info"], machine(tmp_path, "laptop"), tmp_path)
    assert listing.returncode == 0 and "(0 checkpoint(s)" in listing.stdout, (
        listing.stdout + listing.stderr)
    assert bucket("print(fs.find(url))", remote).strip() == "[]"  # nothing was published


def test_a_blob_damaged_in_the_cache_is_fetched_again(remote, s3_server, tmp_path):
    worker_fails(tmp_path)
    prefix = remote.split("/", 3)[3]
    blob_gets = rf"GET /{BUCKET}/{prefix}/blobs/"
    laptop = machine(tmp_path, "laptop")
    replay = run([*CDIP, "run", "scale", "--mode", "run"], laptop, tmp_path)
    assert replay.returncode == 1 and "ZeroDivisionError" in replay.stdout + replay.stderr
    cold = requests(s3_server, blob_gets)
    cache = Path(laptop["XDG_CACHE_HOME"]) / "pyckpt" / "remote"
    (cached,) = (path for path in cache.glob("*/store/blobs/*/*") if path.is_file())
    cached.chmod(0o600)
    with open(cached, "r+b") as stream:  # a bit flipped in place: same size, same name
        stream.seek(1000)
        byte = stream.read(1)
        stream.seek(1000)
        stream.write(bytes([byte[0] ^ 1]))
    replay = run([*CDIP, "run", "scale", "--mode", "run"], laptop, tmp_path)
    assert replay.returncode == 1 and "ZeroDivisionError" in replay.stdout + replay.stderr, (
        replay.stdout + replay.stderr)
    assert requests(s3_server, blob_gets) > cold  # dropped and fetched again, once
    refetched = requests(s3_server, blob_gets)
    again = run([*CDIP, "run", "scale", "--mode", "run"], laptop, tmp_path)
    assert again.returncode == 1 and "ZeroDivisionError" in again.stdout + again.stderr
    assert requests(s3_server, blob_gets) == refetched  # the new copy is sound: kept


def test_the_python_api_loads_and_lists_from_a_url(remote, s3_server, tmp_path):
    worker_fails(tmp_path)
    code = ("import ckpt, sys\n"
            "(entry,) = ckpt.checkpoints(directory=sys.argv[1])\n"
            "print(entry.name, entry.trigger)\n"
            "checkpoint = ckpt.load('scale', directory=sys.argv[1])\n"
            "print(checkpoint.arguments['batch'].sum(), checkpoint.arguments['factor'])\n")
    laptop = {**machine(tmp_path, "laptop"), "PYCKPT_DIR": ""}  # the URL given as `directory`
    loaded = run([sys.executable, "-c", code, remote], laptop, tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == f"scale error\n{float(sum(range(1 << 19)))} 0.0\n", loaded.stdout


def test_export_from_a_url_and_import_into_one(remote, s3_server, tmp_path):
    worker_fails(tmp_path)
    laptop = machine(tmp_path, "laptop")
    bundle = tmp_path / "scale.ckpt"
    exported = run([*CDIP, "export", "scale", "-o", str(bundle)], laptop, tmp_path)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert exported.stdout.startswith(f"exported 1 checkpoint(s) to {bundle}"), exported.stdout
    other = f"s3://{BUCKET}/{uuid.uuid4().hex}"
    colleague = {**machine(tmp_path, "colleague"), "PYCKPT_DIR": other,
                 "PYCKPT_KEY": "ee" * 32}
    imported = run([*CDIP, "import", str(bundle), "--yes"], colleague, tmp_path)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert re.search(r"^imported [0-9a-f]{12}  scale", imported.stdout, re.MULTILINE), (
        imported.stdout)
    listing = run([*CDIP, "info"], colleague, tmp_path)
    assert "(1 checkpoint(s), 4.0 MiB)" in listing.stdout, listing.stdout + listing.stderr
    replay = run([*CDIP, "run", "scale", "--mode", "run"], colleague, tmp_path)
    assert replay.returncode == 1 and "ZeroDivisionError" in replay.stdout + replay.stderr, (
        replay.stdout + replay.stderr)
    twice = run([*CDIP, "import", str(bundle), "--yes"], colleague, tmp_path)
    assert twice.returncode == 2 and "is in s3://" in twice.stderr, twice.stdout + twice.stderr
    assert "Traceback" not in twice.stderr
    listing = run([*CDIP, "info"], colleague, tmp_path)
    assert "(1 checkpoint(s), 4.0 MiB)" in listing.stdout, listing.stdout + listing.stderr


_LARGE_STEP = """
import numpy as np
import ckpt

@ckpt.ckpt(active=False)
def step(batch, factor):
    return float(batch.sum()) / factor

step(np.ones(16 << 20), 0.0)  # 128 MiB: a blob of eight parts
"""


def test_the_server_killed_while_a_save_uploads_changes_nothing_for_the_program(
        tmp_path, monkeypatch):
    first = S3Server(tmp_path / "first", recording=tmp_path / "requests.jsonl").start()
    try:
        first.make_bucket()
        env = {**first.env, **machine(tmp_path, "worker"), "PYCKPT_KEY": KEY,
               "PYCKPT_DIR": f"s3://{BUCKET}/store", "AWS_MAX_ATTEMPTS": "1"}
        program = subprocess.Popen([sys.executable, "-c", _LARGE_STEP], cwd=tmp_path,
                                   env={**os.environ, **env}, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while "partNumber=" not in first.log.read_text(errors="replace"):  # a part is in
            assert program.poll() is None and time.monotonic() < deadline, program.stderr
            time.sleep(0.01)
        first.kill()
        _, stderr = program.communicate(timeout=120)
    finally:
        first.stop()
    # the program's own failure, unchanged, after one warning from ckpt
    assert program.returncode == 1, stderr
    assert stderr.rstrip().endswith("ZeroDivisionError: float division by zero"), stderr
    assert "CkptWarning: ckpt: could not save checkpoint 'step'" in stderr, stderr
    assert "cannot reach the storage service" in stderr, stderr
    # the server back with what it held (moto keeps it in memory: a new one replays the
    # requests the first received): nothing partial is listed, and gc aborts the upload
    second = S3Server(tmp_path / "second").start()
    try:
        second.replay_but_parts(first.recording)
        laptop = {**second.env, **machine(tmp_path, "laptop"), "PYCKPT_KEY": KEY,
                  "PYCKPT_DIR": f"s3://{BUCKET}/store"}
        listing = run([*CDIP, "info"], laptop, tmp_path)
        assert "(0 checkpoint(s), 0 B)" in listing.stdout, listing.stdout + listing.stderr
        unfinished = ("print(len(fs.call_s3('list_multipart_uploads', Bucket=url)"
                      ".get('Uploads', [])), fs.find(url))")
        for name, value in second.env.items():  # for `bucket`'s subprocess
            monkeypatch.setenv(name, value)
        assert bucket(unfinished, BUCKET) == "1 []\n"  # the blob's upload, never completed
        # (moto says every upload started in 2010: gc takes it as over a day old)
        gc = run([*CDIP, "gc"], laptop, tmp_path)
        assert gc.returncode == 0, gc.stderr
        assert gc.stdout.startswith("removed 0 checkpoint(s) and 1 leftover file(s)"), gc.stdout
        assert bucket(unfinished, BUCKET) == "0 []\n"
    finally:
        second.stop()


def test_keep_and_the_byte_budget_hold_on_the_url(remote, s3_server, tmp_path):
    # four calls, each with its own 2 MiB array (a blob); keep=3 per name, then a budget
    # that holds two: the oldest go, and with them the blobs nobody else names
    program = tmp_path / "steps.py"
    program.write_text(
        "import numpy, ckpt\n\n"
        "@ckpt.ckpt(keep=3)\n"
        "def step(batch):\n"
        "    return float(batch[0])\n\n"
        "for i in range(4):\n"
        "    step(numpy.full(2 ** 18, float(i)))\n")
    worker = machine(tmp_path, "worker")
    saved = run([sys.executable, str(program)], worker, tmp_path)
    assert saved.returncode == 0 and "CkptWarning" not in saved.stderr, saved.stderr

    def kept() -> list[str]:
        listing = run([*CDIP, "info", "--json"], machine(tmp_path, "laptop"), tmp_path)
        assert listing.returncode == 0, listing.stderr
        return [row["id"] for row in json.loads(listing.stdout)]

    def blobs() -> int:
        return int(bucket("print(len([p for p in fs.find(url) if '/blobs/' in p]))", remote))

    assert len(kept()) == 3 and blobs() == 3  # the first call's checkpoint and blob went
    newest = kept()[-1]
    budget = run([sys.executable, "-c", "import numpy, ckpt\n"
                  "ckpt.ckpt(keep=3)(lambda batch: 0)(numpy.zeros(2))\n"],
                 {**worker, "PYCKPT_MAX_BYTES": str(5 * 2 ** 20)}, tmp_path)
    assert budget.returncode == 0, budget.stderr
    left = kept()
    assert newest in left and len(left) <= 3  # the budget removed the oldest first
    assert blobs() <= 2  # and freed their blobs (each 2 MiB) to fit 5 MiB


GPU_WORKER = """
import sys, torch, ckpt, ckpt.tensors
# CI has no GPU: CPU storages take the GPU's path (the same code but torch's copy)
ckpt.tensors._streams = lambda flat: True
sizes = []
original = ckpt.tensors.DeviceBytes.chunks
def chunks(self, size, depth):
    for chunk in original(self, size, depth):
        sizes.append(chunk.nbytes)
        yield chunk
ckpt.tensors.DeviceBytes.chunks = chunks

@ckpt.ckpt(name="gpu_remote", active=False)
def step(batch):
    raise ValueError("loss is nan")

try:
    step(torch.arange(5 << 20, dtype=torch.float32))  # 20 MiB
except ValueError:
    print(max(sizes), len(sizes))
"""


def test_a_gpu_storage_saved_into_s3_is_streamed_and_replays(remote, s3_server, tmp_path):
    saved = run([sys.executable, "-c", GPU_WORKER], machine(tmp_path, "worker"), tmp_path)
    assert saved.returncode == 0, saved.stderr
    assert "CkptWarning" not in saved.stderr, saved.stderr
    largest, count = map(int, saved.stdout.split())
    assert largest <= 8 << 20 and count >= 6  # hashed, then uploaded, a chunk at a time
    prefix = remote.split("/", 3)[3]
    assert requests(s3_server, rf"PUT /{BUCKET}/{prefix}/blobs/") >= 1
    loaded = run([sys.executable, "-c", "import ckpt, torch; b = ckpt.load('gpu_remote')"
                  ".arguments['batch']; print(torch.equal(b, torch.arange(5 << 20, "
                  "dtype=torch.float32)))"], machine(tmp_path, "laptop"), tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "True"
