"""The interfaces plugins implement, one module per component kind, and the shared pieces
their implementations call: the token draws (`draws`), what estimators draw and score
(`estimation`), the model they receive (`model`), the segment protocol of samplers
(`segment`) and their time grids (`grids`), and the requirements of structured fast paths
(`requirements`).

This package is what a plugin author reads: a plugin imports the core from here and from
`oemdm_core` (`hookimpl`, `Options`, `ConfigError`, `MonteCarloEstimator`, the registry)
only, never from the modules below (`oemdm_core.testing.imports.check_public_imports`
checks a plugin package for that). It imports only the plugin machinery.
"""

from oemdm_core.interfaces.backbone import ATTENTION_MODES, Backbone, DenoiserOutput, KVCache
from oemdm_core.interfaces.data import SPLITS, Dataset, Tokenizer
from oemdm_core.interfaces.draws import (
    DrawOptions,
    gumbel_noise,
    sample_tokens,
    top_p_filter,
    uniform,
)
from oemdm_core.interfaces.estimation import (
    corrupt,
    cross_entropy,
    discrete_times,
    low_discrepancy_times,
)
from oemdm_core.interfaces.estimator import Estimator, NELBOTerms
from oemdm_core.interfaces.grids import (
    GRID_DESCRIPTION,
    GRIDS,
    GridName,
    StepGrid,
    equal_reveal_time,
)
from oemdm_core.interfaces.model import DiffusionModel
from oemdm_core.interfaces.order import Order
from oemdm_core.interfaces.position_schedule import (
    PositionSchedule,
    SlicedSchedule,
    WindowedSchedule,
    as_time_column,
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
    "GRID_DESCRIPTION",
    "SPLITS",
    "Backbone",
    "BaseSchedule",
    "Dataset",
    "DenoiserOutput",
    "DiffusionModel",
    "DrawOptions",
    "Estimator",
    "GridName",
    "GridStep",
    "KVCache",
    "NELBOTerms",
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
    "as_time_column",
    "block_order_size",
    "block_windows",
    "corrupt",
    "cross_entropy",
    "discrete_times",
    "equal_reveal_time",
    "gumbel_noise",
    "initial_state",
    "left_to_right_problems",
    "low_discrepancy_times",
    "sample_tokens",
    "time_grid",
    "top_p_filter",
    "uniform",
    "whole_sequence",
]
