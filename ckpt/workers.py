"""Who ran a call on a cluster (Dask, Ray, torch.distributed, Slurm), and picking by it.

`identity` runs on every save: off a worker it costs a few dictionary lookups. It
never imports a cluster library: Dask and Ray are asked only when the user's program
imported them already, torch.distributed only when its process group is up, and
everything else comes from the environment variables the launchers set (torchrun,
Slurm's srun and sbatch).
"""

from __future__ import annotations

import os
import sys

from .errors import NotFoundError
from .header import Worker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from .store import Entry, Store

# Ray ids are 56 hex digits or more; listing shows this many.
RAY_SHOWN = 8


def identity() -> Worker | None:
    """The worker running this call, or None when this is no cluster's worker.

    Never raises: a library in an odd state leaves its fields out, not the save.
    """
    launched = _launched()
    found = {**_dask(), **_ray(), **_ranks(launched), **(_slurm() if launched else {})}
    return Worker(**found) if found else None


# The variables the launchers set (torchrun, srun/sbatch), encoded as os.environ keeps them
_LAUNCHER_VARIABLES = frozenset(os.fsencode(name) for name in (
    "RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"))


def _launched() -> bool:
    """Whether any launcher variable is set: off a worker, the only question asked of it.

    Asked of the dictionary behind `os.environ` when there is one: each
    `os.environ.get` of a missing name raises and catches a KeyError inside
    (about a microsecond; nine of them were 1% of a small save).
    """
    raw = getattr(os.environ, "_data", None)
    if not isinstance(raw, dict):
        return True  # cannot tell cheaply: read the variables
    return not raw.keys().isdisjoint(_LAUNCHER_VARIABLES)


def _dask() -> dict[str, str]:
    worker_module = sys.modules.get("distributed.worker")
    if worker_module is None:  # never imported here: this is no Dask worker
        return {}
    try:
        worker = worker_module.get_worker()
    except Exception:  # ValueError: not in a task (the client side, say)
        return {}
    try:
        return {"dask_name": str(worker.name), "dask_address": str(worker.address)}
    except Exception:
        return {}


def _ray() -> dict[str, str]:
    ray = sys.modules.get("ray")
    if ray is None:
        return {}
    try:
        if not ray.is_initialized():
            return {}
        context = ray.get_runtime_context()
        if context.get_task_id() is None:  # the driver, not a task or actor
            return {}
        return {"ray_worker": str(context.get_worker_id()), "ray_node": str(context.get_node_id())}
    except Exception:
        return {}


def _ranks(launched: bool) -> dict[str, int]:
    """RANK, LOCAL_RANK, WORLD_SIZE: from the process group when it is up, else as launched."""
    environ = os.environ
    found = {}
    if launched:
        for field, variable in (("rank", "RANK"), ("local_rank", "LOCAL_RANK"),
                                ("world_size", "WORLD_SIZE")):
            value = _integer(environ.get(variable))
            if value is not None:
                found[field] = value
    found.update(_process_group())
    if launched and "rank" not in found and (_integer(environ.get("SLURM_NTASKS")) or 0) > 1:
        # `srun -n N` without torchrun: each task's rank is its SLURM_PROCID
        found.update(_slurm_ranks(environ))
    return found


def _process_group() -> dict[str, int]:
    """Rank and world size of an initialised torch.distributed group (mp.spawn sets no RANK)."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is None:
        return {}
    try:
        if not (distributed.is_available() and distributed.is_initialized()):
            return {}
        return {"rank": int(distributed.get_rank()),
                "world_size": int(distributed.get_world_size())}
    except Exception:
        return {}


def _slurm_ranks(environ: Mapping[str, str]) -> dict[str, int]:
    found = {}
    for field, variable in (("rank", "SLURM_PROCID"), ("local_rank", "SLURM_LOCALID"),
                            ("world_size", "SLURM_NTASKS")):
        value = _integer(environ.get(variable))
        if value is not None:
            found[field] = value
    return found


def _slurm() -> dict[str, str]:
    environ = os.environ
    job = environ.get("SLURM_ARRAY_JOB_ID") or environ.get("SLURM_JOB_ID")
    if not job:
        return {}
    task = environ.get("SLURM_ARRAY_TASK_ID")
    return {"slurm_job": job, **({"slurm_task": task} if task else {})}


def _integer(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def label(worker: Worker | None) -> str:
    """The short form listing shows: 'rank 1/2', 'dask 0', 'ray 1a2b3c4d', 'slurm 4242_3'."""
    if worker is None:
        return ""
    parts = []
    if worker.rank is not None:
        of = f"/{worker.world_size}" if worker.world_size is not None else ""
        parts.append(f"rank {worker.rank}{of}")
    if worker.dask_name is not None:
        parts.append(f"dask {worker.dask_name}")
    if worker.ray_worker is not None:
        parts.append(f"ray {worker.ray_worker[:RAY_SHOWN]}")
    if worker.slurm_job is not None:
        parts.append(f"slurm {_slurm_id(worker)}")
    return " ".join(parts)


def _slurm_id(worker: Worker) -> str:
    """'4242_3' for an array task (Slurm's own %A_%a), else the job id."""
    task = f"_{worker.slurm_task}" if worker.slurm_task is not None else ""
    return f"{worker.slurm_job}{task}"


def describe(worker: Worker) -> str:
    """Every field, for `cdip info NAME`: 'dask worker 0 (tcp://10.0.0.5:3456)'."""
    parts = []
    if worker.rank is not None:
        local = f", local rank {worker.local_rank}" if worker.local_rank is not None else ""
        of = f" of {worker.world_size}" if worker.world_size is not None else ""
        parts.append(f"rank {worker.rank}{of}{local}")
    if worker.dask_name is not None:
        parts.append(f"dask worker {worker.dask_name} ({worker.dask_address})")
    if worker.ray_worker is not None:
        parts.append(f"ray worker {worker.ray_worker} on node {worker.ray_node}")
    if worker.slurm_job is not None:
        task = f" array task {worker.slurm_task}" if worker.slurm_task is not None else ""
        parts.append(f"slurm job {worker.slurm_job}{task}")
    return "; ".join(parts)


def matches(worker: Worker | None, rank: int | None, wanted: str | None) -> bool:
    """Whether a checkpoint's worker is the one `--rank` and `--worker` ask for.

    `--worker` matches a Dask worker's name or address, a Slurm array task
    ('4242_3' or '3') or job, or the start (6 characters at least) of a Ray
    worker or node id.
    """
    if worker is None:
        return False
    if rank is not None and worker.rank != rank:
        return False
    return wanted is None or wanted in _names(worker) or _ray_prefix(worker, wanted)


def _names(worker: Worker) -> set[str]:
    names = {worker.dask_name, worker.dask_address, worker.slurm_task}
    if worker.slurm_job is not None:
        names |= {worker.slurm_job, _slurm_id(worker)}
    names.discard(None)
    return names  # type: ignore[return-value]


def _ray_prefix(worker: Worker, wanted: str) -> bool:
    return len(wanted) >= 6 and any(
        ray_id is not None and ray_id.startswith(wanted)
        for ray_id in (worker.ray_worker, worker.ray_node))


def find(store: Store, name_or_id: str | None, rank: int | None, wanted: str | None) -> Entry:
    """`cdip run NAME --rank N --worker W`: the newest checkpoint of NAME from that worker.

    Without `rank` and `wanted` it is `store.find`. Without a name, the newest
    checkpoint of any name from that worker.

    Raises:
        NotFoundError: no checkpoint of that name came from that worker (the
            message lists the ranks and workers there are).
    """
    if rank is None and wanted is None:
        return store.find(name_or_id)
    try:
        named = store.entries() if name_or_id is None else _same_name(store, name_or_id)
    except NotFoundError as exc:
        raise _unverified(store, exc) from None
    readable = [entry for entry in named if entry.summary is not None]
    chosen = [entry for entry in readable if matches(worker_of(entry), rank, wanted)]
    if chosen:
        return chosen[-1]  # oldest first: the newest is last
    asked = " and ".join(filter(None, [f"rank {rank}" if rank is not None else "",
                                       f"worker {wanted!r}" if wanted is not None else ""]))
    of = f" of {name_or_id!r}" if name_or_id is not None else ""
    raise NotFoundError(f"no checkpoint{of} from {asked} in {store.path}",
                        hint=_present(readable))


def _unverified(store: Store, exc: NotFoundError) -> NotFoundError:
    """`exc`, saying so when checkpoints are there that do not verify (another key?)."""
    problems = [entry.problem for entry in store.entries() if entry.problem]
    if not problems:
        return exc
    return NotFoundError(
        f"{exc.message}; {len(problems)} checkpoint(s) there do not verify, the newest: "
        f"{problems[-1]}",
        hint="checkpoints from workers verify only under their key: set PYCKPT_KEY (or "
             "PYCKPT_KEY_FILE) to the key the workers were given")


def _same_name(store: Store, name_or_id: str) -> list[Entry]:
    """Every checkpoint of the name `name_or_id` designates (an id: its checkpoint's name)."""
    newest = store.find(name_or_id)
    if newest.summary is None:  # did not verify: nothing of its name can be trusted
        return [newest]
    return [entry for entry in store.entries(newest.key) if entry.name == newest.name]


def worker_of(entry: Entry) -> Worker | None:
    """The worker a verified checkpoint was saved on (None: not on one, or not verified)."""
    return entry.summary.worker if entry.summary is not None else None


def _present(entries: list[Entry]) -> str:
    """'workers there: 0 (tcp://…), 1 (tcp://…); ranks there: 0, 1' for the error's hint."""
    workers = [worker for worker in map(worker_of, entries) if worker is not None]
    names = sorted({name for name in map(_choice, workers) if name is not None})
    ranks = sorted({worker.rank for worker in workers if worker.rank is not None})
    said = []
    if names:
        more = f" and {len(names) - 10} more" if len(names) > 10 else ""
        said.append("workers there: " + ", ".join(names[:10]) + more)
    if ranks:
        said.append("ranks there: " + ", ".join(map(str, ranks)))
    return "; ".join(said) or "none of them was saved on a cluster worker; see `cdip info`"


def _choice(worker: Worker) -> str | None:
    """A worker as `--worker` names it: '0 (tcp://…)', '4242_3', a Ray id's start."""
    if worker.dask_name is not None:
        address = f" ({worker.dask_address})" if worker.dask_address != worker.dask_name else ""
        return f"{worker.dask_name}{address}"
    if worker.slurm_job is not None:
        return _slurm_id(worker)
    if worker.ray_worker is not None:
        return worker.ray_worker[:RAY_SHOWN]
    return None
