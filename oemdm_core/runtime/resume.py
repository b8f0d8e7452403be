"""Resuming a training run: the newest readable checkpoint of its directory, refused when
the config changed, and the training state it holds put back into the model, the optimiser,
the EMA and the random number generators, so that the run continues bit for bit."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from oemdm_core.errors import CheckpointError, ConfigError, OeMDMWarning
from oemdm_core.runtime.checkpoints import (
    CHECKPOINT_DIR,
    EXPERIMENT_FILE,
    TOKENIZER_FILE,
    checkpoint_versions,
    load_json,
    load_training_state,
    set_rng_states,
)
from oemdm_core.runtime.config_dicts import config_differences, flatten
from oemdm_core.runtime.experiment import ExperimentConfig


def load_resume_state(run_dir: Path, cfg: ExperimentConfig) -> tuple[Path, dict, dict]:
    """(checkpoint, training state, tokenizer record) of the newest readable checkpoint of
    `run_dir`; older versions are tried when the newest is unreadable (with a warning)."""
    versions = checkpoint_versions(run_dir)
    if not versions:
        hidden = sorted(p.name for p in run_dir.glob(f".{CHECKPOINT_DIR}.*") if p.is_dir())
        hint = (
            f" ({', '.join(hidden)} left by a crash of an older oemdm during a checkpoint "
            f"swap; rename it to {CHECKPOINT_DIR} to resume from it)"
            if hidden
            else "; the run stopped before its first checkpoint: start over with --overwrite"
        )
        raise FileNotFoundError(
            f"--resume {run_dir}: no checkpoint in {run_dir / CHECKPOINT_DIR}{hint}"
        )
    problems = []
    for ckpt in versions:
        try:
            saved = load_json(ckpt / EXPERIMENT_FILE)
            state = load_training_state(ckpt)
            tokenizer_rec = load_json(ckpt / TOKENIZER_FILE)
        except (CheckpointError, FileNotFoundError) as exc:
            problems.append(str(exc))
            warnings.warn(f"skipping checkpoint {ckpt}: {exc}", OeMDMWarning, stacklevel=2)
            continue
        diff = config_differences(saved, cfg.to_dict())
        if diff:
            old, new = flatten(saved), flatten(cfg.to_dict())
            details = "; ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in diff)
            raise ConfigError(f"refusing to resume {run_dir} with a different config: {details}")
        return ckpt, state, tokenizer_rec
    raise CheckpointError(f"--resume {run_dir}: no readable checkpoint: " + "; ".join(problems))


def restore_training_state(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: nn.Module | None,
) -> int:
    """Load a saved training state into the run's objects and restore the generators;
    returns the step the state was saved at."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    set_rng_states(state["rng"])
    return state["step"]
