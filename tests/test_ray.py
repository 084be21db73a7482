"""A real Ray task fails on a worker process and is replayed here, picked by its Ray worker.

Ray's install (~55 s, ~290 MB) and a local instance's start-up (~5 s, once for this
module) fit the CI budget, so Ray is tested for real rather than through a stand-in.
The store and the key reach the workers through Ray's runtime environment only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import BIN, SAMPLES

CDIP = str(BIN / "cdip")


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray instance whose workers import the step from a code folder on disk."""
    ray = pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("ray")
    code = root / "code"
    code.mkdir()
    shutil.copy(SAMPLES / "ray" / "ray_step.py", code)
    key = os.urandom(32).hex()
    # (not HOME: Ray's own workers read their auth token from it)
    env = {"PYCKPT_DIR": str(root / "store"), "PYCKPT_KEY": key, "PYTHONPATH": str(code)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})
    yield ray, root, key, code
    ray.shutdown()


def cdip(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CDIP, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env={**os.environ, **env})


def test_a_ray_task_that_failed_on_a_worker_replays_here_by_its_ray_worker(ray_instance,
                                                                           tmp_path):
    ray, root, key, code = ray_instance

    @ray.remote(max_retries=0)
    def run_step(batch, scale):
        import ray_step  # the worker imports it from the code folder (PYTHONPATH)
        return ray_step.rescale(batch, scale)

    with pytest.raises(ray.exceptions.RayTaskError, match="ZeroDivisionError"):
        ray.get(run_step.remote([5, -5], 3), timeout=120)

    env = {"PYCKPT_DIR": str(root / "store"), "PYCKPT_KEY": key}
    listing = cdip("info", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    (row,) = json.loads(listing.stdout)
    worker = row["worker"]
    assert row["name"] == "rescale" and row["trigger"] == "error"
    assert len(worker["ray_worker"]) >= 56 and len(worker["ray_node"]) >= 56
    assert f"ray {worker['ray_worker'][:8]}" in cdip("info", env=env).stdout

    fixed = tmp_path / "ray_step.py"
    fixed.write_text((code / "ray_step.py").read_text().replace(
        "total = sum(batch)", "total = sum(batch) or len(batch)"))
    replay = cdip("run", "rescale", "--worker", worker["ray_worker"][:8], "--cwd",
                  str(tmp_path), "--mode", "run", env=env)
    assert replay.returncode == 0, replay.stderr
    assert "rescale returned [7.5, -7.5]" in replay.stdout  # the failed batch, edited code
    other = cdip("run", "rescale", "--worker", "ffffffff", "--mode", "run", env=env)
    assert other.returncode == 2 and "Traceback" not in other.stderr


def test_the_driver_is_not_a_worker(ray_instance):
    from ckpt import workers

    assert workers.identity() is None  # ray imported and initialised, but no task here
