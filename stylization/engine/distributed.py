"""Process-group set-up: ``torchrun`` multi-process, or one plain process (world size 1).

The trainer runs the same code either way; only DDP wrapping and the gathers below
depend on the world size.

On several nodes ``torchrun`` numbers processes twice: ``RANK`` is global (0 .. world size - 1
over all nodes; it shards the data, offsets seeds and picks the one writer, rank 0) and
``LOCAL_RANK`` counts the processes of one node (it picks the GPU). ``LOCAL_WORLD_SIZE`` is
how many processes share this node's cores, ``GROUP_WORLD_SIZE`` how many nodes there are.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist


@dataclasses.dataclass(frozen=True)
class DistEnv:
    rank: int  # global rank, over all nodes
    world_size: int  # processes over all nodes
    local_rank: int  # rank among this node's processes
    device: torch.device
    nodes: int = 1  # torchrun's GROUP_WORLD_SIZE (for the log)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` picks CUDA when available; ``"cuda"`` means this process's local GPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            from stylization.errors import ConfigError

            raise ConfigError("trainer.device=cuda but no CUDA device is visible; use trainer.device=cpu or auto")
        return torch.device("cuda", local_rank)
    return torch.device(requested)


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group that ``torchrun`` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    nodes = int(os.environ.get("GROUP_WORLD_SIZE", "1"))
    dev = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    if dev.type == "cpu":
        torch.set_num_threads(cpu_threads())
    return DistEnv(rank, world_size, local_rank, dev, nodes)


def cpu_threads() -> int:
    """Threads for one training process on the CPU: ``OMP_NUM_THREADS`` when set, else the cores this
    process may run on (its affinity, not the machine's count) shared among the processes started
    on this node (``LOCAL_WORLD_SIZE``, not the world size: other nodes have their own cores).
    ``torchrun`` with ``--nproc_per_node`` > 1 sets ``OMP_NUM_THREADS=1`` itself when it is unset,
    so under it the share applies only with one process per node; set ``OMP_NUM_THREADS`` to
    cores / processes per node instead. More threads than cores makes every step several times
    slower once the cores are shared (15-27 s instead of 3.9 s per Style-A step in one
    measurement)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def wait_for_all(env: "DistEnv") -> None:
    """Every rank waits here for the others (after a run that ended normally): a rank that tears gloo
    down while another still writes its last checkpoint can abort at exit ("terminate called without
    an active exception", seen once under heavy load in tests/test_distributed.py). Not on an error
    path: a rank that died would leave the others waiting for the process group's timeout."""
    if env.world_size > 1 and dist.is_initialized():
        dist.barrier()


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return getattr(module, "module", module)


def broadcast_object(obj, env: DistEnv):
    """Rank 0's ``obj`` on every rank."""
    if env.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj, env: DistEnv) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if env.world_size == 1:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Average scalar metrics over ranks."""
    if env.world_size == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return {k: float(v) / env.world_size for k, v in zip(keys, t.tolist())}
