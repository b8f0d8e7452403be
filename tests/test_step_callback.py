"""The per-step callback of samplers (`sample(..., callback=fn)`, `StepInfo`): every built-in
sampler reports each step, the history it gives agrees with the returned order, and the
conformance kit refuses a `SegmentSampler` whose `fill_segment` never reports."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from oemdm_core import registry
from oemdm_core.interfaces import SegmentSampler, StepInfo
from oemdm_core.testing import ConformanceError, check_sampler, reference_models

# (sampler, options, reference model (order, attention, uses_time)) for each built-in sampler
CASES = [
    ("ancestral", {"steps": 5}, ("mdm", "bidirectional", False)),
    ("remdm", {"steps": 6, "eta": 0.3}, ("mdm", "bidirectional", False)),
    ("topk", {"steps": 4}, ("mdm", "bidirectional", False)),
    ("first-hitting", {}, ("mdm", "bidirectional", True)),
    ("block", {"steps": 3}, ("block", "block_causal", False)),
    ("ar", {}, ("ar", "causal", False)),
]


@pytest.mark.parametrize(("name", "options", "config"), CASES, ids=[c[0] for c in CASES])
def test_the_history_of_steps_replays_the_order(name, options, config):
    sampler = registry.build("sampler", name, **options)
    assert type(sampler).reports_steps
    [(_, model)] = reference_models(configs=[config])
    fixed = torch.tensor([-1, 2, -1, -1, 0, -1, -1, -1])
    steps: list[StepInfo] = []
    result = sampler.sample(
        model, 3, generator=torch.Generator().manual_seed(0), fixed=fixed, callback=steps.append
    )
    plain = sampler.sample(model, 3, generator=torch.Generator().manual_seed(0), fixed=fixed)
    assert torch.equal(result.tokens, plain.tokens) and torch.equal(result.order, plain.order)

    assert [s.index for s in steps] == list(range(len(steps)))
    assert len(steps) == int(result.order.max()) + 1 or name == "remdm"
    assert all(s.state.shape == (3, 8) and s.revealed.shape == (3, 8) for s in steps)
    assert all(s.t.shape == (3,) and bool((s.s <= s.t).all()) for s in steps)
    assert torch.equal(steps[-1].state, result.tokens)
    revealed = torch.stack([s.revealed for s in steps])  # [S, N, L]
    assert not bool(revealed[:, :, [1, 4]].any())  # fixed positions are never revealed
    if name != "remdm":  # without remasking each generated position is revealed once
        assert torch.equal(revealed.sum(0), (result.order >= 0).long())
        assert torch.equal(revealed.long().argmax(0)[:, [0, 2, 3]], result.order[:, [0, 2, 3]])
        # The history holds copies: after step k the masks are where order > k.
        for step in steps:
            assert torch.equal(step.state == model.mask_id, result.order > step.index)
    else:  # the remasking sampler revealed something in its steps too
        assert bool(revealed.any())


def test_block_reports_whole_sequence_states_with_global_steps():
    sampler = registry.build("sampler", "block", steps=2)
    [(_, model)] = reference_models(configs=[("block", "block_causal", False)])
    steps: list[StepInfo] = []
    result = sampler.sample(
        model, 2, generator=torch.Generator().manual_seed(1), callback=steps.append
    )
    # 8 positions in blocks of 2 (the block order's default size), 2 inner steps per block:
    # steps 0-1 fill block 0, steps 2-3 block 1, ...; t runs down through each block's window.
    size = model.order.block_structure()
    assert len(steps) == 2 * 8 // size
    for info in steps:
        block = info.index // 2
        outside = torch.ones(8, dtype=torch.bool)
        outside[block * size : (block + 1) * size] = False
        assert not bool(info.revealed[:, outside].any())
        assert bool((info.state[:, : block * size] != model.mask_id).all())  # earlier blocks
        assert bool((info.state[:, (block + 1) * size :] == model.mask_id).all())  # later ones
    assert torch.equal(steps[-1].state, result.tokens)


class Silent(SegmentSampler):
    """An ancestral rule whose `fill_segment` forgets to report its steps."""

    name = "silent"

    def fill_segment(self, segment, generator=None):
        inner = registry.build("sampler", "ancestral", steps=4)
        return inner.fill_segment(dataclasses.replace(segment, on_step=None), generator)


def test_the_kit_refuses_a_segment_sampler_that_does_not_report_steps():
    with pytest.raises(ConformanceError, match="reports_steps: revealed at the step order"):
        check_sampler(Silent())
