"""torch.distributed for srbench: process-group set-up from ``torchrun``'s environment, and rank helpers.

``torchrun --nproc_per_node N srbench train ...`` (or ``srbench run ...``) starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. ``init()`` joins the process group
(NCCL when CUDA is present, gloo otherwise) and pins each process to GPU ``LOCAL_RANK``. Without
``WORLD_SIZE`` (a plain ``srbench ...``) nothing is initialised and every helper answers as a single process
would: rank 0 of 1, ``is_main()`` true, barriers and gathers are no-ops. Nothing here launches processes.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import torch
import torch.distributed as dist


def requested() -> bool:
    """True when launched by torchrun (``WORLD_SIZE`` is set), even with one process."""
    return "WORLD_SIZE" in os.environ


def init() -> bool:
    """Join the process group described by torchrun's variables; idempotent. Returns whether one is active."""
    if active():
        return True
    if not requested() or not dist.is_available():
        return False
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))  # "cuda" then means this rank's GPU
    dist.init_process_group(backend="nccl" if cuda else "gloo")  # env:// rendezvous (MASTER_ADDR/PORT)
    atexit.register(_shutdown)
    return True


def _shutdown() -> None:
    if active():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0)) if active() else 0


def is_main() -> bool:
    return rank() == 0


def parallel() -> bool:
    """More than one process: gradients must be averaged, work sharded, files written by rank 0 only."""
    return world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` (picklable) on rank 0, in rank order; ``None`` on the other ranks."""
    if not active():
        return [obj]
    out = [None] * world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` on every rank, in rank order."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (collective decisions: stop now, skip this run)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_(tensors: list[torch.Tensor]) -> None:
    """Average ``tensors`` over the ranks in place, in one flat all-reduce (same dtype and device)."""
    if not parallel() or not tensors:
        return
    groups: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.dtype, t.device), []).append(t)
    for group in groups.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        flat /= world_size()
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def broadcast_(tensors: list[torch.Tensor]) -> None:
    """Overwrite ``tensors`` with rank 0's values."""
    if not parallel():
        return
    for t in tensors:
        dist.broadcast(t, src=0)
