"""oemdm: order-expressive masked diffusion language models.

Public names (stable): `registry`, `OeMDM`, and the interfaces plugins implement.
"""

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
from oemdm_core.registry import Registry, registry
from oemdm_core.sampler import Sampler, SampleResult, Scorer
from oemdm_core.schedule import BaseSchedule

__version__ = "0.1.0"

__all__ = [
    "ATTENTION_MODES",
    "KINDS",
    "Backbone",
    "BaseSchedule",
    "Component",
    "ComponentSpec",
    "ConfigError",
    "Dataset",
    "DenoiserOutput",
    "DuplicateComponentError",
    "Estimator",
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
