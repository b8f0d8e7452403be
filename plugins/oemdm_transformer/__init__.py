"""The `transformer` backbone plugin."""

from __future__ import annotations

from oemdm_core import Register, hookimpl
from oemdm_transformer.model import PRESETS, Transformer

__all__ = ["PRESETS", "Transformer"]


@hookimpl
def register_backbones(register: Register) -> None:
    register(Transformer)
