"""The model layer: `OeMDM` (components composed into one model, `oemdm`) and its validated
config (`config`, no torch: the CLI reads configs without importing torch)."""

from __future__ import annotations

from typing import Any

from oemdm_core.model.config import ComponentSpec, ModelConfig

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "ComponentSpec", "ModelConfig", "OeMDM"]


def __getattr__(name: str) -> Any:  # PEP 562: `OeMDM` imports torch, so only on first use
    if name in ("CONFIG_FILE", "WEIGHTS_FILE", "OeMDM"):
        from oemdm_core.model import oemdm

        return getattr(oemdm, name)
    raise AttributeError(f"module 'oemdm_core.model' has no attribute {name!r}")
