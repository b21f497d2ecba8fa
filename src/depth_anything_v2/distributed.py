"""``torch.distributed`` plumbing for training, pseudo-labelling and evaluation: process group from the torchrun
environment, device choice, collective helpers that also work in a single process, and DDP / FSDP wrapping.

Every process started by ``torchrun`` reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from its environment; the
process group uses NCCL on GPUs and Gloo on CPUs. Without those variables (a plain ``python`` run) everything
works as one process and no process group is created.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .devices import resolve_device

log = logging.getLogger(__name__)

__all__ = [
    "DistInfo",
    "all_gather_objects",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "cleanup_distributed",
    "env_rank",
    "init_distributed",
    "wrap_model",
]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node, its ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def env_rank() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the torchrun environment (``0, 1, 0`` without it)."""
    try:
        rank = int(os.environ.get("RANK", 0))
        world = int(os.environ.get("WORLD_SIZE", 1))
        local = int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as e:
        raise ValueError(f"expected integer RANK / WORLD_SIZE / LOCAL_RANK environment variables ({e})") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"expected 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
    return rank, world, local


def init_distributed(device: str = "auto", *, timeout_s: float = 1800.0) -> DistInfo:
    """Read the torchrun environment, pick the device, and start the process group when there are several
    processes (NCCL for CUDA, Gloo otherwise). Safe to call when a group already exists."""
    rank, world, local = env_rank()
    dev = resolve_device(device, local)
    if world == 1:
        return DistInfo(0, 1, 0, dev)
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, dev, dist.get_backend())
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(
        backend, timeout=datetime.timedelta(seconds=timeout_s), device_id=dev if dev.type == "cuda" else None
    )
    log.info("process group: rank %d of %d (local %d), %s on %s", rank, world, local, backend, dev)
    return DistInfo(rank, world, local, dev, backend, owns_group=True)


def cleanup_distributed(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if _active():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a one-element list in a single process)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Mean over ranks of a dict of floats (the same keys on every rank)."""
    if not _active() or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist(), strict=True))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over ranks (in place; returned). One process: unchanged."""
    if _active():
        dist.all_reduce(tensor)
    return tensor


def wrap_model(
    module: nn.Module,
    strategy: str,
    info: DistInfo,
    shard_modules: list[nn.Module],
    *,
    param_dtype: torch.dtype | None = None,
    reduce_dtype: torch.dtype | None = None,
) -> nn.Module:
    """Wrap ``module`` for data-parallel training when several processes run.

    ``ddp``: ``DistributedDataParallel`` (gradients all-reduced, every rank holds everything). ``fsdp``:
    ``torch.distributed.fsdp.fully_shard`` (FSDP2) on each of ``shard_modules`` (the encoder blocks) and on the
    root, so parameters, gradients and optimiser state are split across ranks: the option for the giant encoder.
    ``param_dtype`` / ``reduce_dtype``: FSDP's mixed precision (gathered parameters, gradient reduction; the
    shards stay fp32).
    One process: returned unchanged.
    """
    if not info.is_distributed:
        return module
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(info.device.type, (info.world_size,))
        policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
        for sub in shard_modules:
            fully_shard(sub, mesh=mesh, mp_policy=policy)
        fully_shard(module, mesh=mesh, mp_policy=policy)
        return module
    raise ValueError(f"expected strategy 'ddp' or 'fsdp', got {strategy!r}")
