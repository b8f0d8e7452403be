"""Resuming a training run: the experiment config of `oemdm train --resume DIR`, the newest
readable checkpoint of the directory, refused when the config or the training data changed
(its training state is put back by `training_state.restore_training_state`)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from oemdm_core.errors import CheckpointError, ConfigError, OeMDMWarning
from oemdm_core.runtime.checkpoint.store import (
    EXPERIMENT_FILE,
    LATEST_CHECKPOINT,
    checkpoint_versions,
    load_json,
    load_tokenizer_record,
    load_training_state,
)
from oemdm_core.runtime.config_dicts import config_differences, flatten
from oemdm_core.runtime.data_cache import Data
from oemdm_core.runtime.experiment import ExperimentConfig, load_config


def resolve_config(
    config_file: str | None, overrides: list[str], resume: str | os.PathLike | None = None
) -> ExperimentConfig:
    """The experiment config of `oemdm train [-c FILE] [--set k=v ...] [--resume DIR]`: the
    defaults, or with `resume` and no file the config saved in the newest checkpoint of DIR
    (going on to its `training.steps`: `stop_after` is cleared), then the file, then the
    overrides. `fit` later refuses a resume whose config differs in what a run fixes."""
    base = None
    if resume is not None and not config_file:
        versions = [v for v in checkpoint_versions(resume) if (v / EXPERIMENT_FILE).is_file()]
        if not versions:
            where = Path(resume) / LATEST_CHECKPOINT
            raise FileNotFoundError(f"--resume {resume}: no checkpoint in {where}")
        base = load_json(versions[0] / EXPERIMENT_FILE)
        base["training"]["stop_after"] = None  # a resumed run goes on to training.steps
    return load_config(config_file, overrides, base=base)


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
