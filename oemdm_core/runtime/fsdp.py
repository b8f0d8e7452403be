"""FSDP2 for `training.distributed: fsdp`: weights, gradients and optimiser state sharded
over the processes of a run (`torch.distributed.fsdp.fully_shard`).

The backbone's `shard_units()` (the transformer blocks) are sharded one by one, then the
whole model: a unit's weights are gathered just before its forward (and again for its
backward) and freed after, so a process holds its 1/world share of every weight plus one
unit at a time. The model's own parameters (embedding, head, final norm, a learned order's
schedulers) form the root unit, which FSDP keeps gathered from the forward to the backward.
Gradients are averaged over the processes (reduce-scatter) after every micro-batch's backward.

A sharded model's calls are collectives: every process must make the same ones. The trainer
does (every rank trains, evaluates and computes the order statistics); what only rank 0 does
(samples, `save_pretrained`) runs on `gathered_copy`, a plain model with the full weights.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor

from oemdm_core.model.oemdm import OeMDM
from oemdm_core.plugin.registry import Registry

# The methods besides `forward` that the runtime calls on a sharded model: each gathers the
# root unit's weights first, as `forward` does.
FORWARD_METHODS = ("nelbo", "generation_weights")


def shard_model(model: OeMDM, ema: OeMDM | None) -> None:
    """Shard `model` and its EMA copy (alike, so the EMA update is shard by shard) in place
    over the default process group; their parameters become `DTensor` shards, so build the
    optimiser afterwards."""
    for module in (model, ema) if ema is not None else (model,):
        for unit in module.backbone.shard_units():
            fully_shard(unit)
        fully_shard(module)
        for name in FORWARD_METHODS:
            register_fsdp_forward_method(module, name)


def gathered_copy(model: OeMDM, registry: Registry, device: torch.device) -> OeMDM | None:
    """A plain copy of sharded `model` with its full weights, on `device`, on rank 0; None on
    the other ranks. A collective: every rank calls it. The global RNG is left untouched
    (building the copy would otherwise draw its initial weights from it)."""
    full = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )  # on rank 0 only, on the CPU
    if dist.get_rank() != 0:
        return None
    with torch.random.fork_rng(devices=[]):
        copy = OeMDM.from_config(model.config(), registry=registry)
    copy.load_state_dict(full)
    return copy.to(device).train(model.training)


def full_value(value: Tensor) -> Tensor:
    """A reduction over sharded tensors (a grad norm) as a plain tensor; others unchanged."""
    return value.full_tensor() if isinstance(value, DTensor) else value
