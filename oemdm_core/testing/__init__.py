"""Conformance kits for plugin authors: one check per component kind (the `kit` of its row
in `oemdm_core.plugin.kinds`), each called as `kit(component, registry=...)` and raising
`ConformanceError` naming the component, the property and the input.

- `check_schedule` (base schedules); `check_order` and `check_position_schedule` (orders);
- `check_sampler` (samplers, run on models of the reference backbone);
- `check_backbone` (backbones: shapes and every declared capability);
- `check_scorer` (scorers); `check_estimator` (estimators: unbiased against exact
  enumeration on reference models); `check_tokenizer` (tokenizers); `check_dataset`
  (datasets);
- `ReferenceBackbone`, `ReferenceLinear`, `reference_models`: tiny deterministic models;
- hypothesis strategies: `times`, `time_pairs`, `edge_times`, `lengths`, `vocab_sizes`,
  `batch_sizes`, `token_batches`.

`testing.tiny_gpt2.write_tiny_gpt2` writes a random Hugging Face GPT-2 judge for offline
tests (needs `transformers`; not imported here).
"""

from oemdm_core.testing.backbone import check_backbone
from oemdm_core.testing.common import TOL, ConformanceError
from oemdm_core.testing.dataset import check_dataset
from oemdm_core.testing.estimator import check_estimator
from oemdm_core.testing.order import check_order
from oemdm_core.testing.reference import (
    REFERENCE_MODELS,
    ReferenceBackbone,
    ReferenceLinear,
    reference_models,
)
from oemdm_core.testing.sampler import check_sampler
from oemdm_core.testing.schedule import check_position_schedule, check_schedule
from oemdm_core.testing.scorer import check_scorer
from oemdm_core.testing.strategies import (
    EDGE_EPS,
    batch_sizes,
    edge_times,
    lengths,
    time_pairs,
    times,
    token_batches,
    vocab_sizes,
)
from oemdm_core.testing.tokenizer import check_tokenizer

__all__ = [
    "EDGE_EPS",
    "REFERENCE_MODELS",
    "TOL",
    "ConformanceError",
    "ReferenceBackbone",
    "ReferenceLinear",
    "batch_sizes",
    "check_backbone",
    "check_dataset",
    "check_estimator",
    "check_order",
    "check_position_schedule",
    "check_sampler",
    "check_schedule",
    "check_scorer",
    "check_tokenizer",
    "edge_times",
    "lengths",
    "reference_models",
    "time_pairs",
    "times",
    "token_batches",
    "vocab_sizes",
]
