"""Shared fixtures: a fresh registry per test, tiny models."""

from __future__ import annotations

import pytest
import torch

from oemdm_core import OeMDM, Registry

# The test models are tiny: one thread is faster than two fighting over small kernels,
# and keeps the suite's wall time stable on a shared 2-core CI machine.
torch.set_num_threads(1)


@pytest.fixture
def fresh_registry() -> Registry:
    """A registry with the installed entry points, independent of the global one."""
    return Registry()


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def tiny_model(
    order: dict | str = "mdm",
    schedule: dict | str = "linear",
    vocab_size: int = 3,
    length: int = 4,
    **backbone,
) -> OeMDM:
    """A tiny transformer model built from registry names (fixed seed for the weights)."""
    torch.manual_seed(0)
    return OeMDM.from_config(
        {
            "vocab_size": vocab_size,
            "length": length,
            "backbone": {"name": "transformer", "preset": "tiny", **backbone},
            "order": order,
            "schedule": schedule,
        }
    )
