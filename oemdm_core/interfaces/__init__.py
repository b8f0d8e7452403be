"""The interfaces plugins implement, one module per component kind, and the shared pieces
their implementations call (the token draws, the segment protocol of block samplers).

This package is what a plugin author reads. It imports only the plugin machinery.
"""

from oemdm_core.interfaces.backbone import ATTENTION_MODES, Backbone, DenoiserOutput
from oemdm_core.interfaces.data import Dataset, Tokenizer
from oemdm_core.interfaces.estimator import Estimator
from oemdm_core.interfaces.order import Order
from oemdm_core.interfaces.position_schedule import (
    PositionSchedule,
    WindowedSchedule,
    block_windows,
)
from oemdm_core.interfaces.sampler import Sampler, SampleResult, Scorer, initial_state
from oemdm_core.interfaces.schedule import BaseSchedule

__all__ = [
    "ATTENTION_MODES",
    "Backbone",
    "BaseSchedule",
    "Dataset",
    "DenoiserOutput",
    "Estimator",
    "Order",
    "PositionSchedule",
    "SampleResult",
    "Sampler",
    "Scorer",
    "Tokenizer",
    "WindowedSchedule",
    "block_windows",
    "initial_state",
]
