"""The transformer passes `check_backbone` in every configuration its options can declare
(its default, checked with every backbone in test_conformance, is bidirectional only):
causal and block-causal attention with a KV cache, time-conditioned or not."""

from __future__ import annotations

import pytest
import torch

from oemdm_core import ATTENTION_MODES, registry
from oemdm_core.testing import check_backbone


@pytest.mark.parametrize("time_conditioning", [False, True])
@pytest.mark.parametrize("attention", ATTENTION_MODES)
def test_the_transformer_passes_check_backbone(attention, time_conditioning):
    torch.manual_seed(0)
    block_size = 3 if attention == "block_causal" else 1
    backbone = registry.build(
        "backbone",
        "transformer",
        preset="tiny",
        vocab_size=5,
        max_length=16,
        attention=attention,
        block_size=block_size,
        time_conditioning=time_conditioning,
    )
    assert backbone.supports_kv_cache == (attention != "bidirectional")
    check_backbone(backbone)
