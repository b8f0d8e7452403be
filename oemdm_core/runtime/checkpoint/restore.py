"""Restore a trained run from its checkpoint: the model, the experiment config and the data
pipeline (tokenizer, no splits) it was trained with."""

from __future__ import annotations

from pathlib import Path

from oemdm_core.errors import CheckpointError, ConfigError
from oemdm_core.model.oemdm import OeMDM
from oemdm_core.model.pretrained import CONFIG_FILE
from oemdm_core.plugin.registry import Registry
from oemdm_core.runtime.checkpoint.store import (
    EXPERIMENT_FILE,
    MODEL_DIR,
    find_checkpoint,
    load_json,
    load_tokenizer_record,
)
from oemdm_core.runtime.data_cache import Data, build_data
from oemdm_core.runtime.device import resolve_device
from oemdm_core.runtime.experiment import ExperimentConfig, parse_config


def load_checkpoint(
    checkpoint: str, registry: Registry | None = None, device: str = "cpu"
) -> tuple[OeMDM, ExperimentConfig, Data, Path]:
    """(model, experiment config, Data without splits, checkpoint dir) of a checkpoint (a run
    directory or a checkpoint directory); the model is on `device`."""
    device = str(resolve_device(device, "--device"))
    ckpt = find_checkpoint(checkpoint)
    try:
        cfg = parse_config(load_json(ckpt / EXPERIMENT_FILE))
    except ConfigError as exc:
        raise CheckpointError(f"{ckpt / EXPERIMENT_FILE}: {exc}") from None
    model = OeMDM.from_pretrained(ckpt / MODEL_DIR, registry=registry, map_location=device)
    if model.length != cfg.data.length:
        raise CheckpointError(
            f"{ckpt / MODEL_DIR / CONFIG_FILE}: length {model.length} disagrees with the "
            f"data.length {cfg.data.length} the weights were trained at "
            f"({ckpt / EXPERIMENT_FILE}); was config.json edited? Use --length to "
            "evaluate or sample another length"
        )
    data = build_data(cfg, registry, load_tokenizer_record(ckpt), splits=())
    return model.to(device), cfg, data, ckpt
