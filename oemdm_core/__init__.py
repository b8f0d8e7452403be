"""oemdm: order-expressive masked diffusion language models.

Public names (stable): `registry`, `OeMDM`, and the interfaces plugins implement.

The names are imported on first access (PEP 562), so that `import oemdm_core.cli` (and
`oemdm --help`) does not pay for importing torch; `from oemdm_core import OeMDM` works as
always.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from oemdm_core.registry import Registry, registry  # no torch; binds the name `registry`

# to the instance (a lazy name would be shadowed by the submodule `oemdm_core.registry`)

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "ATTENTION_MODES": "oemdm_core.backbone",
    "Backbone": "oemdm_core.backbone",
    "DenoiserOutput": "oemdm_core.backbone",
    "KINDS": "oemdm_core.component",
    "Component": "oemdm_core.component",
    "Options": "oemdm_core.component",
    "ComponentSpec": "oemdm_core.config",
    "ModelConfig": "oemdm_core.config",
    "Dataset": "oemdm_core.data",
    "Tokenizer": "oemdm_core.data",
    "ConfigError": "oemdm_core.errors",
    "DuplicateComponentError": "oemdm_core.errors",
    "MissingPluginError": "oemdm_core.errors",
    "OeMDMError": "oemdm_core.errors",
    "UnknownComponentError": "oemdm_core.errors",
    "Estimator": "oemdm_core.estimator",
    "MonteCarloEstimator": "oemdm_core.estimator",
    "hookimpl": "oemdm_core.hookspecs",
    "OeMDM": "oemdm_core.model",
    "NELBOTerms": "oemdm_core.nelbo",
    "Order": "oemdm_core.order",
    "PositionSchedule": "oemdm_core.position_schedule",
    "WindowedSchedule": "oemdm_core.position_schedule",
    "block_windows": "oemdm_core.position_schedule",
    "Sampler": "oemdm_core.sampler",
    "SampleResult": "oemdm_core.sampler",
    "Scorer": "oemdm_core.sampler",
    "BaseSchedule": "oemdm_core.schedule",
}

__all__ = [
    "ATTENTION_MODES",
    "Backbone",
    "BaseSchedule",
    "Component",
    "ComponentSpec",
    "ConfigError",
    "Dataset",
    "DenoiserOutput",
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
    "Registry",
    "SampleResult",
    "Sampler",
    "Scorer",
    "Tokenizer",
    "UnknownComponentError",
    "WindowedSchedule",
    "__version__",
    "block_windows",
    "hookimpl",
    "registry",
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
    from oemdm_core.backbone import ATTENTION_MODES, Backbone, DenoiserOutput
    from oemdm_core.component import KINDS, Component, Options
    from oemdm_core.config import ComponentSpec, ModelConfig
    from oemdm_core.data import Dataset, Tokenizer
    from oemdm_core.errors import (
        ConfigError,
        DuplicateComponentError,
        MissingPluginError,
        OeMDMError,
        UnknownComponentError,
    )
    from oemdm_core.estimator import Estimator, MonteCarloEstimator
    from oemdm_core.hookspecs import hookimpl
    from oemdm_core.model import OeMDM
    from oemdm_core.nelbo import NELBOTerms
    from oemdm_core.order import Order
    from oemdm_core.position_schedule import PositionSchedule, WindowedSchedule, block_windows
    from oemdm_core.sampler import Sampler, SampleResult, Scorer
    from oemdm_core.schedule import BaseSchedule
