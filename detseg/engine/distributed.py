"""torch.distributed for training and evaluation launched by ``torchrun``.

``torchrun --nproc_per_node=N tools/train.py CONFIG`` sets ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them
and joins the process group (NCCL with CUDA, gloo on the CPU). Without them every helper
here answers as for one process, so the same code runs in both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the process group when launched by ``torchrun`` (idempotent); the CUDA device
    of this process is ``cuda:LOCAL_RANK``. Returns this process's place."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), int(os.environ["WORLD_SIZE"]))
    if not dist.is_initialized():
        use_cuda = device_name != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return info


def dist_info() -> DistInfo:
    """This process's place in an initialised process group (one process otherwise)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size())


def is_main_process() -> bool:
    return dist_info().is_main


def barrier() -> None:
    if dist_info().enabled:
        dist.barrier()


def any_process(flag: bool) -> bool:
    """True on every process when ``flag`` is true on any (so all stop together)."""
    if not dist_info().enabled:
        return flag
    tensor = torch.tensor([int(flag)], device=_collective_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def all_gather_objects(item):
    """Every process's ``item``, in rank order (``[item]`` for one process)."""
    info = dist_info()
    if not info.enabled:
        return [item]
    everything = [None] * info.world_size
    dist.all_gather_object(everything, item)
    return everything


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
