"""Shared fixtures: a fresh registry per test, tiny models, tiny training runs."""

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


def tiny_run(tmp_path, run: str = "run", *extra: str) -> list[str]:
    """Config overrides for a seconds-long CPU training run on pydoc (mdm, tiny transformer,
    L = 16, 4 steps of 4 sequences, no periodic eval, checkpoint or samples) into
    `tmp_path / run`; `extra` overrides come last and win."""
    return [
        "model.order=mdm",
        "model.backbone={name: transformer, preset: tiny}",
        "data.length=16",
        f"data.cache_dir={tmp_path / 'cache'}",
        "training.steps=4",
        "training.batch_size=4",
        "training.warmup_steps=1",
        "training.log_every=1",
        "training.eval_every=0",
        "training.checkpoint_every=0",
        "training.progress=false",
        f"training.run_dir={tmp_path / run}",
        "evaluation.max_sequences=4",
        "evaluation.num_times=2",
        "sampling.num_samples=0",
        *extra,
    ]
