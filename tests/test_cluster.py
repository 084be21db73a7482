"""Checkpoints from cluster workers: a real Dask cluster, a real torch.distributed run, Slurm.

Each worker gets the store and the key through its environment only (PYCKPT_DIR,
PYCKPT_KEY), as a cluster passes secrets; the test process then replays one
worker's failure by `--worker` or `--rank`, with edited code, under the same key.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from conftest import BIN, SAMPLES

import ckpt
from ckpt import workers
from ckpt.errors import CkptError, CkptWarning
from ckpt.header import MalformedHeader, Summary, Worker
from ckpt.keys import key_from_text, load_key

CDIP = str(BIN / "cdip")
CLUSTER = SAMPLES / "cluster"
# What the launchers set; a test's own environment must not leak into identity()
LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID",
                      "SLURM_ARRAY_TASK_ID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS")


def cdip(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`cdip ARGS` in a subprocess with `env` added (the store and key, usually)."""
    return subprocess.run([CDIP, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL, env={**os.environ, **env})


def cluster_env(root: Path, key: str) -> dict[str, str]:
    """A worker's environment: the shared store and the key, and a home of its own."""
    home = root / "worker-home"
    home.mkdir(exist_ok=True)
    return {"PYCKPT_DIR": str(root / "store"), "PYCKPT_KEY": key, "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"), "XDG_STATE_HOME": str(home / ".state")}


def listed(env: dict[str, str]) -> list[dict]:
    result = cdip("info", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def no_key_file_in(home: Path) -> None:
    """The key came from PYCKPT_KEY: no worker wrote one of its own."""
    assert not [path for path in home.rglob("*") if path.name == "key"]


# -- Dask: a LocalCluster with two worker processes ---------------------------------


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory):
    """Two worker processes; they import the step from a code directory shared with us.

    Yields (client, root, key, code file). One cluster for the module: starting one
    costs about a second.
    """
    distributed = pytest.importorskip("distributed")
    import dask
    root = tmp_path_factory.mktemp("dask")
    code = root / "code"
    code.mkdir()
    shutil.copy(CLUSTER / "dask_step.py", code / "dask_step.py")
    key = os.urandom(32).hex()
    # The worker processes are spawned: they start with our sys.path and directory,
    # as workers on a shared file system would
    sys.path.insert(0, str(code))
    here = os.getcwd()
    os.chdir(code)
    started = time.perf_counter()
    try:
        # a task whose worker dies fails at once, rather than killing the next worker too
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = distributed.LocalCluster(
                n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                env=cluster_env(root, key))  # Nanny(env=): set in each worker process
        client = distributed.Client(cluster)
    finally:
        os.chdir(here)
    print(f"LocalCluster(n_workers=2, processes=True) up in {time.perf_counter() - started:.2f} s")
    import dask_step  # submitted by reference: each worker imports it from `code`

    yield client, root, key, dask_step, code / "dask_step.py"
    client.close()
    cluster.close()
    sys.path.remove(str(code))
    sys.modules.pop("dask_step", None)


def dask_workers(client) -> list[dict[str, str]]:
    """Each worker's name and address (its "id" here), ordered by name."""
    found = client.scheduler_info()["workers"]
    return sorted(({"name": str(info["name"]), "id": address} for address, info in found.items()),
                  key=lambda worker: worker["name"])


def test_a_dask_task_that_failed_on_a_worker_replays_here_by_worker(dask_cluster, launcher_free):
    client, root, key, module, step = dask_cluster
    assert workers.identity() is None  # the client: distributed imported, but no task
    normalise = module.normalise
    first, second = dask_workers(client)
    # the same function fails on both workers, each with its own batch
    futures = [client.submit(normalise, [1, -1], 10, workers=[first["id"]], pure=False),
               client.submit(normalise, [2, -2], 7, workers=[second["id"]], pure=False)]
    for future in futures:
        with pytest.raises(ZeroDivisionError):
            future.result(timeout=60)
    env = {"PYCKPT_DIR": str(root / "store"), "PYCKPT_KEY": key}

    rows = listed(env)
    assert {(row["worker"]["dask_name"], row["worker"]["dask_address"]) for row in rows} == {
        (first["name"], first["id"]), (second["name"], second["id"])}
    assert all(row["trigger"] == "error" and row["problem"] is None for row in rows)
    listing = cdip("info", env=env).stdout
    assert "WORKER" in listing and f"dask {second['name']}" in listing
    detail = cdip("info", rows[0]["id"], env=env).stdout
    assert f"dask worker {rows[0]['worker']['dask_name']} ({rows[0]['worker']['dask_address']})" \
        in detail

    step.write_text(step.read_text().replace("total = sum(batch)",
                                             "total = sum(batch) or len(batch)"))
    by_name = cdip("run", "normalise", "--worker", second["name"], "--mode", "run", env=env)
    assert by_name.returncode == 0, by_name.stderr
    assert "normalise returned [7.0, -7.0]" in by_name.stdout  # the second worker's batch
    by_address = cdip("run", "normalise", "--worker", first["id"], "--mode", "run", env=env)
    assert by_address.returncode == 0, by_address.stderr
    assert "normalise returned [5.0, -5.0]" in by_address.stdout

    missing = cdip("run", "normalise", "--worker", "tcp://10.9.9.9:1", "--mode", "run", env=env)
    assert missing.returncode == 2
    assert "no checkpoint of 'normalise' from worker 'tcp://10.9.9.9:1'" in missing.stderr
    assert f"{first['name']} ({first['id']})" in missing.stderr  # the workers there are
    assert f"{second['name']} ({second['id']})" in missing.stderr
    assert "Traceback" not in missing.stderr
    no_key_file_in(root / "worker-home")


def test_a_replay_under_another_key_is_refused(dask_cluster):
    client, root, key, module, _ = dask_cluster
    worker = dask_workers(client)[0]
    future = client.submit(module.normalise, [3, -3], 1, workers=[worker["id"]], pure=False)
    with pytest.raises(ZeroDivisionError):
        future.result(timeout=60)
    mine = os.urandom(32).hex()  # the laptop's own key, not the workers'
    env = {"PYCKPT_DIR": str(root / "store"), "PYCKPT_KEY": mine}
    refused = cdip("run", "normalise", "--worker", worker["id"], "--mode", "run", env=env)
    assert refused.returncode == 2
    assert "do not verify" in refused.stderr and "signed under another key" in refused.stderr
    assert "PYCKPT_KEY" in refused.stderr  # says which setting to fix
    assert "normalise returned" not in refused.stdout
    assert mine not in refused.stderr + refused.stdout and key not in refused.stderr


def temporaries(store: Path) -> list[Path]:
    """The store's files being written (or left by a writer that died)."""
    return list(store.glob(".tmp-*"))


def test_a_worker_killed_mid_save_leaves_nothing_listed_and_gc_cleans_up(dask_cluster):
    """SIGKILL between the call part and the error part (last here: a worker dies)."""
    distributed = pytest.importorskip("distributed")
    client, root, key, module, _ = dask_cluster
    store = root / "store"
    before = {row["id"] for row in listed({"PYCKPT_DIR": str(store), "PYCKPT_KEY": key})}
    assert not temporaries(store)
    future = client.submit(module.die_while_saving, 1, pure=False)
    with pytest.raises(distributed.KilledWorker):
        future.result(timeout=60)
    env = {"PYCKPT_DIR": str(store), "PYCKPT_KEY": key}
    rows = listed(env)
    assert {row["id"] for row in rows} == before  # nothing partial is listed
    assert not [row for row in rows if row["problem"]]
    leftovers = temporaries(store)
    assert leftovers  # the staged call part of the dead worker
    cleaned = cdip("gc", env=env)
    assert cleaned.returncode == 0, cleaned.stderr
    assert f"removed 0 checkpoint(s) and {len(leftovers)} leftover file(s)" in cleaned.stdout
    assert not temporaries(store)
    assert {row["id"] for row in listed(env)} == before


# -- torch.distributed: two ranks, gloo on the CPU ------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_rank_1_of_a_torch_distributed_run_replays_by_rank(tmp_path):
    pytest.importorskip("torch.distributed")
    shutil.copy(CLUSTER / "torch_ranks.py", tmp_path / "torch_ranks.py")
    key = os.urandom(32).hex()
    launch = {**cluster_env(tmp_path, key), "MASTER_ADDR": "127.0.0.1",
              "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2"}
    ranks = [subprocess.Popen(  # what torchrun does: one process per rank, told by variables
        [sys.executable, "torch_ranks.py"], cwd=tmp_path, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, **launch, "RANK": str(rank),
                                     "LOCAL_RANK": str(rank)}) for rank in (0, 1)]
    outputs = [process.communicate(timeout=120) for process in ranks]
    assert ranks[0].returncode == 0, outputs[0][1]
    assert "rank 0: 2 ranks" in outputs[0][0] and "rank 0: loss 2.5" in outputs[0][0]
    assert ranks[1].returncode == 1 and "FloatingPointError: loss is nan" in outputs[1][1]
    env = {"PYCKPT_DIR": str(tmp_path / "store"), "PYCKPT_KEY": key}
    workers_seen = {row["worker"]["rank"]: row for row in listed(env)}
    assert {rank: (row["trigger"], row["worker"]) for rank, row in workers_seen.items()} == {
        0: ("call", {"rank": 0, "local_rank": 0, "world_size": 2}),
        1: ("error", {"rank": 1, "local_rank": 1, "world_size": 2})}
    assert "rank 1/2" in cdip("info", env=env).stdout

    script = tmp_path / "torch_ranks.py"
    script.write_text(script.read_text().replace("shard.sum() / shard.numel()",
                                                 "shard.sum() / max(shard.numel(), 1)"))
    fixed = cdip("run", "shard_loss", "--rank", "1", "--mode", "run", env=env)
    assert fixed.returncode == 0, fixed.stderr
    # rank 1's empty shard, not the newest checkpoint (rank 0's, saved last on purpose)
    assert "shard_loss returned 0.0" in fixed.stdout
    assert workers_seen[0]["created"] > workers_seen[1]["created"]
    assert "rank 0" not in fixed.stdout  # the step alone: no process group, no main()
    missing = cdip("run", "shard_loss", "--rank", "7", env=env)
    assert missing.returncode == 2
    assert "no checkpoint of 'shard_loss' from rank 7" in missing.stderr
    assert "ranks there: 0, 1" in missing.stderr
    no_key_file_in(tmp_path / "worker-home")


def test_the_process_group_says_the_rank_where_no_variable_does(tmp_path):
    """torch.multiprocessing.spawn passes the rank to init_process_group: no RANK is set.

    A stale RANK in the environment (a launcher's, for another process) loses to it.
    """
    pytest.importorskip("torch.distributed")
    program = ("import torch.distributed as dist\n"
               "from ckpt import workers\n"
               "before = workers.identity()\n"
               "dist.init_process_group('gloo', rank=0, world_size=1, "
               f"init_method='tcp://127.0.0.1:{free_port()}')\n"
               "print(before.rank, workers.identity())\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path,
                            env={**os.environ, "RANK": "5", "WORLD_SIZE": "9"})
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.split(" ", 1)
    assert before == "5"  # the variables, until the group is up
    assert after.strip() == repr(Worker(rank=0, world_size=1))


# -- Slurm: it sets environment variables, so these tests set them ---------------------


def test_a_failed_slurm_array_task_replays_by_its_task_id(tmp_path):
    shutil.copy(CLUSTER / "array_task.py", tmp_path / "array_task.py")
    key = os.urandom(32).hex()
    for task in ("2", "3"):
        slurm = {"SLURM_ARRAY_JOB_ID": "4242", "SLURM_JOB_ID": str(5000 + int(task)),
                 "SLURM_ARRAY_TASK_ID": task}
        subprocess.run([sys.executable, "array_task.py"], cwd=tmp_path, capture_output=True,
                       timeout=60, env={**os.environ, **cluster_env(tmp_path, key), **slurm})
    env = {"PYCKPT_DIR": str(tmp_path / "store"), "PYCKPT_KEY": key}
    assert [(row["trigger"], row["worker"]) for row in listed(env)] == [
        ("call", {"slurm_job": "4242", "slurm_task": "2"}),
        ("error", {"slurm_job": "4242", "slurm_task": "3"})]
    assert "slurm 4242_3" in cdip("info", env=env).stdout

    script = tmp_path / "array_task.py"
    script.write_text(script.read_text().replace(
        "int(field) for field in text.split(\",\")",
        "int(field) for field in text.split(\",\") if field.isdigit()"))
    # by Slurm's JOB_TASK, by the task id alone, and without a name: that task's newest
    for picked, total in ((["parse_chunk", "--worker", "4242_3"], 10),
                          (["parse_chunk", "--worker", "2"], 6), (["--worker", "3"], 10)):
        fixed = cdip("run", *picked, "--mode", "run", env=env)
        assert fixed.returncode == 0, fixed.stderr
        assert f"parse_chunk returned {total}" in fixed.stdout
    missing = cdip("run", "parse_chunk", "--worker", "4242_9", env=env)
    assert missing.returncode == 2 and "workers there: 4242_2, 4242_3" in missing.stderr
    no_key_file_in(tmp_path / "worker-home")


def test_a_bundle_exported_on_the_cluster_keeps_the_worker_when_imported(tmp_path):
    """The other way to trust a cluster: its own key, `cdip export` there, `cdip import` here."""
    shutil.copy(CLUSTER / "array_task.py", tmp_path / "array_task.py")
    cluster = {**cluster_env(tmp_path, os.urandom(32).hex()), "SLURM_ARRAY_JOB_ID": "77",
               "SLURM_ARRAY_TASK_ID": "3"}
    subprocess.run([sys.executable, "array_task.py"], cwd=tmp_path, capture_output=True,
                   timeout=60, env={**os.environ, **cluster})
    exported = cdip("export", "-o", str(tmp_path / "failures.ckpt"), env=cluster)
    assert exported.returncode == 0, exported.stderr
    laptop = {"PYCKPT_DIR": str(tmp_path / "laptop-store")}  # this user's own key file
    imported = cdip("import", "--yes", str(tmp_path / "failures.ckpt"), env=laptop)
    assert imported.returncode == 0, imported.stderr
    assert [row["worker"] for row in listed(laptop)] == [{"slurm_job": "77", "slurm_task": "3"}]
    assert cdip("run", "parse_chunk", "--worker", "77_3", "--mode", "run", env=laptop
                ).returncode == 1  # it replays: still failing, the code is not fixed


def test_a_workers_identity_never_drives_the_terminal(launcher_free):
    """A worker holding the key may name itself anything: shown escaped everywhere."""
    launcher_free.setenv("SLURM_JOB_ID", "\x1b]0;pwned\x07")

    @ckpt.ckpt
    def step(x):
        return x

    step(1)
    launcher_free.delenv("SLURM_JOB_ID")
    shown = [cdip("info", env={}).stdout, cdip("info", "step", env={}).stdout,
             cdip("run", "step", "--worker", "nobody", env={}).stderr]
    for text in shown:
        assert "\x1b" not in text and "\x07" not in text
        assert "\\x1b]0;pwned\\x07" in text
    assert listed({})[0]["worker"] == {"slurm_job": "\x1b]0;pwned\x07"}  # exact in JSON


@pytest.fixture
def launcher_free(monkeypatch):
    """No launcher's variables from the environment the tests run in."""
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_identity_off_a_worker_is_none(launcher_free):
    assert workers.identity() is None
    launcher_free.setenv("SLURM_JOB_ID", "12")  # any launcher variable is seen
    assert workers.identity() == Worker(slurm_job="12")


def test_ranks_from_torchrun_then_from_srun(launcher_free):
    launcher_free.setenv("SLURM_JOB_ID", "77")
    launcher_free.setenv("SLURM_NTASKS", "4")
    launcher_free.setenv("SLURM_PROCID", "3")
    launcher_free.setenv("SLURM_LOCALID", "1")
    assert workers.identity() == Worker(rank=3, local_rank=1, world_size=4, slurm_job="77")
    launcher_free.setenv("RANK", "0")  # torchrun inside the Slurm step: its ranks win
    launcher_free.setenv("WORLD_SIZE", "2")
    assert workers.identity() == Worker(rank=0, world_size=2, slurm_job="77")
    launcher_free.setenv("RANK", "not a number")  # ignored, never an error
    assert workers.identity() == Worker(rank=3, local_rank=1, world_size=4, slurm_job="77")


def test_identity_imports_no_cluster_library(tmp_path):
    """A decorated call off a worker imports neither distributed, ray nor torch."""
    program = ("import sys, ckpt\n"
               "@ckpt.ckpt\ndef f(x): return x\n"
               "f(1)\n"
               "print(sorted(m for m in ('distributed', 'ray', 'torch', 'dask') "
               "if m in sys.modules))\n")
    env = {**os.environ, "PYCKPT_KEY": os.urandom(32).hex()}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert [row["worker"] for row in listed(env)] == [None]  # it saved, as no worker


# -- the header field ---------------------------------------------------------------


def test_summaries_without_a_worker_still_read_and_a_bad_one_is_refused():
    old = {"part": "call", "id": "abc", "name": "f", "stamp": 1, "function": "m:f"}
    assert Summary.from_json(old).worker is None
    new = Summary.from_json({**old, "worker": {"rank": 1, "dask_name": "a"}})
    assert new.worker == Worker(rank=1, dask_name="a")
    assert Summary.from_json(new.to_json()) == new
    for bad in ("rank 1", {"rank": "1"}, {"dask_name": 3}, {"rank": True}):
        with pytest.raises(MalformedHeader):
            Summary.from_json({**old, "worker": bad})


# -- PYCKPT_KEY ---------------------------------------------------------------------


def test_cdip_key_prints_what_pyckpt_key_takes(store, tmp_path):
    """A key file's checkpoints verify under PYCKPT_KEY=$(cdip key), hex or base64."""
    import base64

    printed = cdip("key", env={})
    assert printed.returncode == 0, printed.stderr
    assert key_from_text(printed.stdout) == load_key(create=False)  # cdip key created it

    @ckpt.ckpt
    def saved_with_the_file(x):
        return x

    saved_with_the_file(1)
    for text in (printed.stdout.strip(), base64.b64encode(load_key()).decode()):
        rows = listed({"PYCKPT_KEY": text, "PYCKPT_KEY_FILE": str(tmp_path / "nowhere")})
        assert [(row["name"], row["problem"]) for row in rows] == [
            ("test_cdip_key_prints_what_pyckpt_key_takes.<locals>.saved_with_the_file", None)]


@pytest.mark.parametrize("value", ["", "0" * 63, "g" * 64, "00 " * 20 + "0000", "c2VjcmV0"])
def test_a_malformed_pyckpt_key_warns_in_the_program_and_is_an_error_in_cdip(
        store, monkeypatch, value):
    monkeypatch.setenv("PYCKPT_KEY", value)

    @ckpt.ckpt
    def step(x):
        return x * 2

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert step(21) == 42  # the user's program carries on
    messages = [str(w.message) for w in caught if issubclass(w.category, CkptWarning)]
    assert len(messages) == 1 and "PYCKPT_KEY is set but holds no checkpoint key" in messages[0]
    with pytest.raises(CkptError):
        load_key()
    for command in (["info"], ["run", "step", "--mode", "run"], ["key"]):
        result = cdip(*command, env={})
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("cdip: error: PYCKPT_KEY is set but holds no "
                                        "checkpoint key")
        assert "Traceback" not in result.stderr
        assert not value or value not in result.stderr  # a secret is never echoed
    assert not store.exists() or not list(store.iterdir())
