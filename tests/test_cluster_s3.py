"""Issue 13's whole story: a Dask task fails on a worker, its checkpoint lands in S3, and
another "machine" (another HOME, key delivered the same way, another cache, another
directory with edited code) replays that exact task.

The S3 API server is moto's, on loopback (tests/s3server.py); the cluster is a real
`distributed.LocalCluster` with worker processes that get the store URL and the key
through their environment only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import s3server
from conftest import BIN, SAMPLES
from s3server import BUCKET

CDIP = str(BIN / "cdip")


s3 = s3server.s3_server  # one S3 server for the session, with its bucket


def home(root: Path, name: str) -> dict[str, str]:
    """A user's own HOME and XDG directories (so nothing is shared but the bucket)."""
    path = root / name
    path.mkdir()
    return {"HOME": str(path), "XDG_CONFIG_HOME": str(path / ".config"),
            "XDG_STATE_HOME": str(path / ".state"), "XDG_CACHE_HOME": str(path / ".cache")}


def test_a_dask_task_failed_into_s3_replays_on_another_machine_with_edited_code(s3, tmp_path):
    distributed = pytest.importorskip("distributed")
    code = tmp_path / "cluster-code"
    code.mkdir()
    shutil.copy(SAMPLES / "cluster" / "dask_step.py", code / "dask_step.py")
    key = os.urandom(32).hex()
    store = f"s3://{BUCKET}/runs/{tmp_path.name}"
    workers_env = {**s3.env, **home(tmp_path, "worker-home"), "PYCKPT_DIR": store,
                   "PYCKPT_KEY": key}
    sys.path.insert(0, str(code))
    here = os.getcwd()
    os.chdir(code)
    try:
        cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                           dashboard_address=None, env=workers_env)
        client = distributed.Client(cluster)
        os.chdir(here)
        import dask_step
        future = client.submit(dask_step.normalise, [3, -3], 4, pure=False)
        with pytest.raises(ZeroDivisionError):
            future.result(timeout=60)
        client.close()
        cluster.close()
    finally:
        os.chdir(here)
        sys.path.remove(str(code))
        sys.modules.pop("dask_step", None)

    # the laptop: the bucket and the key only; the code checked out elsewhere, and fixed
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    shutil.copy(code / "dask_step.py", laptop / "dask_step.py")
    fixed = laptop / "dask_step.py"
    fixed.write_text(fixed.read_text().replace("total = sum(batch)",
                                               "total = sum(batch) or len(batch)"))
    env = {**os.environ, **s3.env, **home(tmp_path, "laptop-home"), "PYCKPT_DIR": store,
           "PYCKPT_KEY": key}

    def cdip(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CDIP, *args], capture_output=True, text=True, timeout=120,
                              cwd=laptop, env=env, stdin=subprocess.DEVNULL)

    listing = cdip("info", "--json")
    assert listing.returncode == 0, listing.stderr
    (row,) = json.loads(listing.stdout)
    assert row["name"] == "normalise" and row["trigger"] == "error"
    assert row["worker"]["dask_address"].startswith("tcp://127.0.0.1:")

    replay = cdip("run", "normalise", "--worker", row["worker"]["dask_address"], "--cwd",
                  str(laptop), "--mode", "run")
    assert replay.returncode == 0, replay.stderr
    assert "normalise returned [6.0, -6.0]" in replay.stdout  # the failed batch, fixed code
    # the cluster's copy of the code still fails: the laptop's edit is what ran
    assert "total = sum(batch)\n" in (code / "dask_step.py").read_text()

    # under another key the same bucket holds nothing this user will run
    refused = subprocess.run([CDIP, "run", "normalise", "--mode", "run"], capture_output=True,
                             text=True, timeout=120, cwd=laptop, stdin=subprocess.DEVNULL,
                             env={**env, "PYCKPT_KEY": os.urandom(32).hex()})
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
