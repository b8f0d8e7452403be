"""Inference-time order rules (scorers) and the `topk` sampler that uses them."""

from __future__ import annotations

from oemdm_core import Register, hookimpl
from oemdm_topk.scorers import (
    SCORERS,
    Confidence,
    Entropy,
    Margin,
    PlackettLuce,
    Random,
    Velocity,
)
from oemdm_topk.topk import TopKSampler, step_counts, top_k_mask

__all__ = [
    "Confidence",
    "Entropy",
    "Margin",
    "PlackettLuce",
    "Random",
    "TopKSampler",
    "Velocity",
    "step_counts",
    "top_k_mask",
]


@hookimpl
def register_scorers(register: Register) -> None:
    for scorer in SCORERS:
        register(scorer)


@hookimpl
def register_samplers(register: Register) -> None:
    register(TopKSampler)
