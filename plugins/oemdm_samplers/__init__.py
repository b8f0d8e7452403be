"""Sampler plugins."""

from __future__ import annotations

from oemdm_core import hookimpl
from oemdm_samplers.ancestral import AncestralSampler

__all__ = ["AncestralSampler"]


@hookimpl
def register_samplers(register):
    register(AncestralSampler)
