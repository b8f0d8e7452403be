"""The model layer: `OeMDM` (components composed into one model, `oemdm`), its validated
config (`config`, no torch: the CLI reads configs without importing torch) and its saved
form (`pretrained`: `config.json` next to `model.safetensors`)."""

from __future__ import annotations

from typing import Any

from oemdm_core.model.config import ComponentSpec, ModelConfig

__all__ = ["ComponentSpec", "ModelConfig", "OeMDM"]


def __getattr__(name: str) -> Any:  # PEP 562: `OeMDM` imports torch, so only on first use
    if name == "OeMDM":
        from oemdm_core.model.oemdm import OeMDM

        return OeMDM
    raise AttributeError(f"module 'oemdm_core.model' has no attribute {name!r}")
