"""Sampler plugins: ancestral, first-hitting, remdm (remasking), ar (KV cache) and block
(KV cache)."""

from __future__ import annotations

from oemdm_core import Register, hookimpl
from oemdm_core.interfaces import Segment, SegmentResult, SegmentSampler
from oemdm_samplers.ancestral import AncestralSampler
from oemdm_samplers.ar import ARSampler
from oemdm_samplers.block import BlockSampler
from oemdm_samplers.first_hitting import FirstHittingSampler
from oemdm_samplers.remdm import RemaskingSampler, RemaskSampleResult

__all__ = [
    "ARSampler",
    "AncestralSampler",
    "BlockSampler",
    "FirstHittingSampler",
    "RemaskSampleResult",
    "RemaskingSampler",
    "Segment",
    "SegmentResult",
    "SegmentSampler",
]


@hookimpl
def register_samplers(register: Register) -> None:
    register(AncestralSampler)
    register(FirstHittingSampler)
    register(RemaskingSampler)
    register(ARSampler)
    register(BlockSampler)
