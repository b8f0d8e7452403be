"""The processes of a training run: this process's rank, their number and its device, and
the process group joined under torchrun."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from oemdm_core.runtime.device import resolve_device


@dataclass(frozen=True)
class Processes:
    """This process's place in the run: its rank, the number of processes, its device."""

    rank: int
    world: int
    device: torch.device


def join_processes(device: str) -> Processes:
    """Rank and world size (the process group is initialised under torchrun) and the device
    named by `training.device` (on CUDA with several processes: this process's GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    resolved = resolve_device(device, "training.device")
    if resolved.type == "cuda" and world > 1:
        # Before the first collective: NCCL runs a collective on the current device, so
        # without this every rank's run-directory broadcast would run on cuda:0.
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    return Processes(rank, world, resolved)
