"""The interfaces plugins implement, one module per component kind, and the shared pieces
their implementations call: the token draws (`draws`), the segment protocol of samplers
(`segment`) and their time grids (`grids`), and the requirements of structured fast paths (`requirements`).

This package is what a plugin author reads. It imports only the plugin machinery.
"""

from oemdm_core.interfaces.backbone import ATTENTION_MODES, Backbone, DenoiserOutput, KVCache
from oemdm_core.interfaces.data import Dataset, Tokenizer
from oemdm_core.interfaces.draws import (
    DrawOptions,
    gumbel_noise,
    sample_tokens,
    top_p_filter,
    uniform,
)
from oemdm_core.interfaces.estimator import Estimator
from oemdm_core.interfaces.grids import GRIDS, StepGrid, equal_reveal_time
from oemdm_core.interfaces.order import Order
from oemdm_core.interfaces.position_schedule import (
    PositionSchedule,
    SlicedSchedule,
    WindowedSchedule,
    block_windows,
)
from oemdm_core.interfaces.requirements import block_order_size, left_to_right_problems
from oemdm_core.interfaces.sampler import Sampler, SampleResult, Scorer, initial_state
from oemdm_core.interfaces.schedule import BaseSchedule
from oemdm_core.interfaces.segment import (
    GridStep,
    Segment,
    SegmentResult,
    SegmentSampler,
    StepCallback,
    StepInfo,
    time_grid,
    whole_sequence,
)

__all__ = [
    "ATTENTION_MODES",
    "GRIDS",
    "Backbone",
    "BaseSchedule",
    "Dataset",
    "DenoiserOutput",
    "DrawOptions",
    "Estimator",
    "GridStep",
    "KVCache",
    "Order",
    "PositionSchedule",
    "SampleResult",
    "Sampler",
    "Scorer",
    "Segment",
    "SegmentResult",
    "SegmentSampler",
    "SlicedSchedule",
    "StepCallback",
    "StepGrid",
    "StepInfo",
    "Tokenizer",
    "WindowedSchedule",
    "block_order_size",
    "block_windows",
    "equal_reveal_time",
    "gumbel_noise",
    "initial_state",
    "left_to_right_problems",
    "sample_tokens",
    "time_grid",
    "top_p_filter",
    "uniform",
    "whole_sequence",
]
