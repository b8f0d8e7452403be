"""Sharded checkpoints of `training.distributed: fsdp` runs: every process writes its shard
of the weights, the optimiser state and the EMA with `torch.distributed.checkpoint` (DCP).

A checkpoint version (`oemdm_core.runtime.checkpoint.store`) of such a run holds, besides the
usual files,

    shards/             .metadata and one __<rank>_0.distcp per process: "model",
                        "optimizer" and "ema" (FQN-keyed, as `get_state_dict` gives them)

and its `training_state.pt` has `sharded: True` with `model`, `optimizer` and `ema` None;
`model/` holds the full EMA weights, gathered on rank 0 (`fsdp.gathered_copy`).

Atomic like every checkpoint: the shards are written first into the version's hidden
temporary directory, which rank 0 creates and names to the others, then rank 0 writes the
rest and renames the directory. With several nodes the run directory must therefore be on a
file system that every node sees. Reading reshards: a checkpoint loads into any number of
processes, or into one process that does not shard at all.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from oemdm_core.errors import CheckpointError

SHARDS_DIR = "shards"


def sharded_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, ema: nn.Module | None
) -> dict[str, Any]:
    """This process's shards of the weights, the optimiser state and the EMA (DTensors under
    FSDP, plain tensors otherwise), the layout DCP writes and reads."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    if ema is not None:
        state["ema"] = get_model_state_dict(ema)
    return state


def write_shards(
    version_tmp: Path | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: nn.Module | None,
) -> None:
    """Every rank: write this process's shards into `<version_tmp>/shards`, where rank 0
    passes the temporary directory of the version being written and the others None (they
    receive its name). Returns when every shard and the metadata are written."""
    names = [str(version_tmp) if version_tmp is not None else None]
    dist.broadcast_object_list(names, src=0)
    directory = Path(str(names[0])) / SHARDS_DIR
    try:
        dcp.save(sharded_state(model, optimizer, ema), checkpoint_id=directory)
    except dcp.CheckpointException as exc:  # e.g. the OSError of a full disk, as itself
        raise first_failure(exc) from None


def shard_writer(
    model: nn.Module, optimizer: torch.optim.Optimizer, ema: nn.Module | None
) -> Callable[[Path], None] | None:
    """The sharded part of a checkpoint. On rank 0: the `shards` callback of
    `store.save_versioned_checkpoint`, which calls it with the version's temporary
    directory. On the other ranks: their shards are written at once (into the directory
    that rank 0 names) and None is returned: rank 0 writes the rest."""
    if dist.get_rank() == 0:
        return functools.partial(write_shards, model=model, optimizer=optimizer, ema=ema)
    write_shards(None, model, optimizer, ema)
    return None


def load_shards(
    checkpoint: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: nn.Module | None,
) -> None:
    """Load the shards of `checkpoint` into the run's model, optimiser and EMA (sharded or
    not; DCP reshards to their layout). Unreadable shards raise `CheckpointError`."""
    directory = Path(checkpoint) / SHARDS_DIR
    if not (directory / ".metadata").is_file():
        raise CheckpointError(f"missing {SHARDS_DIR}/.metadata in checkpoint {checkpoint}")
    state = sharded_state(model, optimizer, ema)
    try:
        with warnings.catch_warnings():  # one process without a group: as intended, say nothing
            warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
            dcp.load(state, checkpoint_id=directory, no_dist=not dist.is_initialized())
    except (Exception, dcp.CheckpointException) as exc:  # unpickling errors of every kind
        cause = first_failure(exc) if isinstance(exc, dcp.CheckpointException) else exc
        text = " ".join(f"{type(cause).__name__}: {cause}".split())[:160]
        raise CheckpointError(f"{directory}: the shards cannot be read ({text})") from None
    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
    )
    if ema is not None:
        set_model_state_dict(ema, state["ema"])


def first_failure(exc: dcp.CheckpointException) -> BaseException:
    """The exception of the lowest failing rank, which DCP wraps with every rank's."""
    return exc.failures[min(exc.failures)][0]
