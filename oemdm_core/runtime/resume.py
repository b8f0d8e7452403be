"""Resuming a training run: the newest readable checkpoint of its directory, refused when
the config or the training data changed, and the training state it holds put back into the model, the optimiser,
the EMA and the random number generators, so that the run continues bit for bit."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from oemdm_core.errors import CheckpointError, ConfigError, OeMDMWarning
from oemdm_core.runtime.checkpoints import (
    EXPERIMENT_FILE,
    LATEST_CHECKPOINT,
    checkpoint_versions,
    load_json,
    load_tokenizer_record,
    load_training_state,
    set_rng_states,
)
from oemdm_core.runtime.config_dicts import config_differences, flatten
from oemdm_core.runtime.data_cache import Data
from oemdm_core.runtime.evaluation.likelihood import EvalResult
from oemdm_core.runtime.experiment import ExperimentConfig


def load_resume_state(run_dir: Path, cfg: ExperimentConfig) -> tuple[Path, dict, dict]:
    """(checkpoint, training state, tokenizer record) of the newest readable checkpoint of
    `run_dir`; older versions are tried when the newest is unreadable (with a warning)."""
    versions = checkpoint_versions(run_dir)
    if not versions:
        hidden = sorted(p.name for p in run_dir.glob(f".{LATEST_CHECKPOINT}.*") if p.is_dir())
        hint = (
            f" ({', '.join(hidden)} left by a crash of an older oemdm during a checkpoint "
            f"swap; rename it to {LATEST_CHECKPOINT} to resume from it)"
            if hidden
            else "; the run stopped before its first checkpoint: start over with --overwrite"
        )
        raise FileNotFoundError(
            f"--resume {run_dir}: no checkpoint in {run_dir / LATEST_CHECKPOINT}{hint}"
        )
    problems = []
    for ckpt in versions:
        try:
            saved = load_json(ckpt / EXPERIMENT_FILE)
            state = load_training_state(ckpt)
            tokenizer_rec = load_tokenizer_record(ckpt)
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


def check_same_data(run_dir: Path, state: dict[str, Any], data: Data) -> None:
    """Refuse to resume when the training data differ from those the checkpoint was trained
    on (the sha256 of the tokenized training split); checkpoints written before the data
    were recorded are accepted unchecked."""
    saved, now = state.get("data"), data.fingerprint
    if not saved or not now or saved.get("train_sha256") == now["train_sha256"]:
        return
    if saved.get("source") != now["source"]:
        change = f"the dataset changed: {saved.get('source')} → {now['source']}"
    else:
        change = "the dataset reads the same, but its tokens differ (was the cache edited?)"
    raise ConfigError(
        f"refusing to resume {run_dir}: the training data are not those of the checkpoint "
        f"({saved.get('train_tokens')} → {now['train_tokens']} tokens; {change}); restore "
        "the data, or start a new run"
    )


def final_eval(state: dict[str, Any] | None) -> EvalResult | None:
    """The final evaluation of a resumed checkpoint written at the end of its run (`finish`),
    else None. Checkpoints written before `finished` was recorded count as final when they
    hold an evaluation (a final checkpoint always does)."""
    if state is None or not state.get("finished", state.get("eval") is not None):
        return None
    return EvalResult(**state["eval"]) if state.get("eval") else None


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
