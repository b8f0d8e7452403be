"""Checkpoint directories written by `oemdm train`, and how to read them back.

Layout of `<run>/checkpoint/` (written atomically as a whole):

    model/              OeMDM.save_pretrained of the weights used for eval/samples (the EMA
                        weights when EMA is on): config.json + model.safetensors
    tokenizer.json      tokenizer name, options and fitted state (e.g. the char vocabulary)
    experiment.json     the resolved experiment config
    training_state.pt   raw weights, optimizer, lr schedule, EMA, RNG states, step, data position
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oemdm_core.checkpoint import atomic_directory, write_json
from oemdm_core.model import CONFIG_FILE, OeMDM

MODEL_DIR = "model"
TOKENIZER_FILE = "tokenizer.json"
EXPERIMENT_FILE = "experiment.json"
STATE_FILE = "training_state.pt"
CHECKPOINT_DIR = "checkpoint"


def rng_states() -> dict[str, Any]:
    """Global RNG states (torch CPU and CUDA, numpy, python)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def save_checkpoint(
    path: str | os.PathLike,
    eval_model: OeMDM,
    tokenizer_record: dict[str, Any],
    experiment: dict[str, Any],
    training_state: dict[str, Any],
    registry=None,
) -> Path:
    """Write a checkpoint directory atomically (a crash leaves the previous one intact)."""
    with atomic_directory(path) as tmp:
        eval_model.save_pretrained(tmp / MODEL_DIR, registry=registry)
        write_json(tmp / TOKENIZER_FILE, tokenizer_record)
        write_json(tmp / EXPERIMENT_FILE, experiment)
        torch.save(training_state, tmp / STATE_FILE)
    return Path(path)


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory for a run dir, a checkpoint dir or its `model/` dir."""
    path = Path(path)
    for candidate in (path, path / CHECKPOINT_DIR, path.parent):
        if (candidate / MODEL_DIR / CONFIG_FILE).is_file():
            return candidate
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    raise FileNotFoundError(
        f"{path} is not a checkpoint written by `oemdm train` (expected {CHECKPOINT_DIR}/"
        f"{MODEL_DIR}/{CONFIG_FILE} inside a run directory)"
    )


def load_training_state(checkpoint: Path, map_location: str = "cpu") -> dict[str, Any]:
    return torch.load(checkpoint / STATE_FILE, map_location=map_location, weights_only=False)


def load_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"missing {path.name} in checkpoint {path.parent}")
    return json.loads(path.read_text())


def build_tokenizer(record: dict[str, Any], registry):
    """Rebuild a fitted tokenizer from its `tokenizer.json` record."""
    cls = registry.get("tokenizer", record["name"])
    tokenizer = cls.from_options(cls.validate_options(prefix="data.tokenizer", **record["options"]))
    tokenizer.load_state(record.get("state") or {})
    return tokenizer


def tokenizer_record(tokenizer) -> dict[str, Any]:
    return {"name": tokenizer.name, "options": tokenizer.get_options(), "state": tokenizer.state()}
