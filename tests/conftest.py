"""Shared fixtures: a fresh registry per test, tiny models."""

from __future__ import annotations

import pytest
import torch

from oemdm_core import OeMDM, Registry


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
