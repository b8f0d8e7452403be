"""oemdm: order-expressive masked diffusion language models.

Public names (stable): `registry`, `OeMDM`, and the interfaces plugins implement.

The names are imported on first access (PEP 562), so that `import oemdm_core.cli` (and
`oemdm --help`) does not pay for importing torch; `from oemdm_core import OeMDM` works as
always.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from oemdm_core.plugin.registry import Registry, registry  # no torch; binds the name `registry`

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "ATTENTION_MODES": "oemdm_core.interfaces.backbone",
    "Backbone": "oemdm_core.interfaces.backbone",
    "DenoiserOutput": "oemdm_core.interfaces.backbone",
    "KINDS": "oemdm_core.plugin.kinds",
    "Component": "oemdm_core.plugin.component",
    "Options": "oemdm_core.plugin.component",
    "ComponentSpec": "oemdm_core.model.config",
    "ModelConfig": "oemdm_core.model.config",
    "Dataset": "oemdm_core.interfaces.data",
    "Tokenizer": "oemdm_core.interfaces.data",
    "ConfigError": "oemdm_core.errors",
    "DuplicateComponentError": "oemdm_core.errors",
    "MissingPluginError": "oemdm_core.errors",
    "OeMDMError": "oemdm_core.errors",
    "UnknownComponentError": "oemdm_core.errors",
    "Estimator": "oemdm_core.interfaces.estimator",
    "MonteCarloEstimator": "oemdm_core.nelbo.monte_carlo",
    "hookimpl": "oemdm_core.plugin.hookspecs",
    "Register": "oemdm_core.plugin.hookspecs",
    "OeMDM": "oemdm_core.model.oemdm",
    "NELBOTerms": "oemdm_core.interfaces.estimator",
    "DiffusionModel": "oemdm_core.interfaces.model",
    "ComponentRegistry": "oemdm_core.plugin.component",
    "resolve_registry": "oemdm_core.plugin.registry",
    "Order": "oemdm_core.interfaces.order",
    "PositionSchedule": "oemdm_core.interfaces.position_schedule",
    "WindowedSchedule": "oemdm_core.interfaces.position_schedule",
    "block_windows": "oemdm_core.interfaces.position_schedule",
    "Sampler": "oemdm_core.interfaces.sampler",
    "SampleResult": "oemdm_core.interfaces.sampler",
    "Scorer": "oemdm_core.interfaces.sampler",
    "DrawOptions": "oemdm_core.interfaces.draws",
    "Segment": "oemdm_core.interfaces.segment",
    "SegmentResult": "oemdm_core.interfaces.segment",
    "SegmentSampler": "oemdm_core.interfaces.segment",
    "StepInfo": "oemdm_core.interfaces.segment",
    "BaseSchedule": "oemdm_core.interfaces.schedule",
}

__all__ = [
    "ATTENTION_MODES",
    "Backbone",
    "BaseSchedule",
    "Component",
    "ComponentSpec",
    "ConfigError",
    "ComponentRegistry",
    "Dataset",
    "DenoiserOutput",
    "DiffusionModel",
    "DrawOptions",
    "DuplicateComponentError",
    "Estimator",
    "KINDS",
    "MissingPluginError",
    "ModelConfig",
    "MonteCarloEstimator",
    "NELBOTerms",
    "OeMDM",
    "OeMDMError",
    "Options",
    "Order",
    "PositionSchedule",
    "Register",
    "Registry",
    "SampleResult",
    "Sampler",
    "Scorer",
    "Segment",
    "SegmentResult",
    "SegmentSampler",
    "StepInfo",
    "Tokenizer",
    "UnknownComponentError",
    "WindowedSchedule",
    "__version__",
    "block_windows",
    "hookimpl",
    "registry",
    "resolve_registry",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'oemdm_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs: the eager imports
    from oemdm_core.errors import (
        ConfigError,
        DuplicateComponentError,
        MissingPluginError,
        OeMDMError,
        UnknownComponentError,
    )
    from oemdm_core.interfaces.backbone import ATTENTION_MODES, Backbone, DenoiserOutput
    from oemdm_core.interfaces.data import Dataset, Tokenizer
    from oemdm_core.interfaces.draws import DrawOptions
    from oemdm_core.interfaces.estimator import Estimator, NELBOTerms
    from oemdm_core.interfaces.model import DiffusionModel
    from oemdm_core.interfaces.order import Order
    from oemdm_core.interfaces.position_schedule import (
        PositionSchedule,
        WindowedSchedule,
        block_windows,
    )
    from oemdm_core.interfaces.sampler import Sampler, SampleResult, Scorer
    from oemdm_core.interfaces.schedule import BaseSchedule
    from oemdm_core.interfaces.segment import Segment, SegmentResult, SegmentSampler, StepInfo
    from oemdm_core.model.config import ComponentSpec, ModelConfig
    from oemdm_core.model.oemdm import OeMDM
    from oemdm_core.nelbo.monte_carlo import MonteCarloEstimator
    from oemdm_core.plugin.component import Component, ComponentRegistry, Options
    from oemdm_core.plugin.hookspecs import Register, hookimpl
    from oemdm_core.plugin.kinds import KINDS
    from oemdm_core.plugin.registry import resolve_registry
