"""Scorers (inference-time order rules) and the `topk` sampler."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from oemdm_topk import TopKSampler, step_counts, top_k_mask

from oemdm_core import ConfigError, UnknownComponentError, registry

SCORERS = ("confidence", "entropy", "margin", "plackett-luce", "random")


def test_scorers_and_sampler_are_registered():
    assert set(SCORERS) <= set(registry.available("scorer"))
    assert "topk" in registry.available("sampler")
    with pytest.raises(UnknownComponentError, match="plackett-luce"):
        registry.build("sampler", "topk", scorer="plackett")
    with pytest.raises(ConfigError, match="steps"):
        registry.build("sampler", "topk", steps=0)
    with pytest.raises(ConfigError, match="top_p"):
        registry.build("sampler", "topk", top_p=0.0)
    assert registry.build("sampler", "topk", scorer="margin").get_options()["scorer"] == "margin"


def test_logit_scorers_rank_as_documented():
    # position 0: confident, 1: flat, 2: two-way tie between the top tokens
    probs = torch.tensor([[[0.9, 0.05, 0.05], [1 / 3, 1 / 3, 1 / 3], [0.45, 0.45, 0.1]]])
    logits = probs.log()
    conf = registry.build("scorer", "confidence").score(logits, None)
    torch.testing.assert_close(conf, probs.max(-1).values.double())
    margin = registry.build("scorer", "margin").score(logits, None)
    torch.testing.assert_close(margin, torch.tensor([[0.85, 0.0, 0.0]], dtype=torch.float64))
    entropy = registry.build("scorer", "entropy").score(logits, None)
    assert entropy.argmax(-1).item() == 0 and entropy.argmin(-1).item() == 1
    assert entropy.dtype == torch.float64


@pytest.mark.parametrize("name", ["plackett-luce", "random"])
def test_random_scorers_are_plackett_luce(name):
    """Top-1 of log v + Gumbel is position i with probability v_i / Σ v (uniform for random)."""
    n = 20000
    velocity = torch.tensor([1.0, 2.0, 3.0, 4.0]).expand(n, -1)
    scores = registry.build("scorer", name).score(
        torch.zeros(n, 4, 3), velocity, torch.Generator().manual_seed(0)
    )
    assert scores.dtype == torch.float64
    freq = torch.bincount(scores.argmax(-1), minlength=4).double() / n
    p = torch.tensor([0.1, 0.2, 0.3, 0.4]) if name == "plackett-luce" else torch.full((4,), 0.25)
    se = (p * (1 - p) / n).sqrt()
    assert bool(((freq - p.double()).abs() < 4 * se.double()).all()), (freq, p)


def test_step_rule_and_top_k_mask():
    prob = torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.2, 0.2, 0.0, 0.9]])
    eligible = prob > 0
    assert step_counts(prob, eligible, last=False).tolist() == [2, 1]
    assert step_counts(prob, eligible, last=True).tolist() == [4, 3]
    scores = torch.tensor([[0.1, 0.4, 0.3, 0.2], [5.0, 1.0, 9.0, 2.0]])
    reveal = top_k_mask(scores, eligible, torch.tensor([2, 1]))
    assert reveal.tolist() == [[False, True, True, False], [True, False, False, False]]


def step_histogram(order: torch.Tensor, steps: int) -> torch.Tensor:
    """`[N, steps]`: positions un-masked at each step."""
    onehot = torch.nn.functional.one_hot(order.clamp(min=0), steps) * (order >= 0)[..., None]
    return onehot.sum(1)


def test_exactly_k_positions_per_step_for_mdm():
    """mdm + linear, L = 10, T = 4: m masked positions spread as round(m/k): 3, 2, 3, 2."""
    model = tiny_model("mdm", length=10)
    for scorer in SCORERS:
        sampler = registry.build("sampler", "topk", steps=4, scorer=scorer)
        result = sampler.sample(model, 3, 10, generator=torch.Generator().manual_seed(0))
        assert step_histogram(result.order, 4).tolist() == [[3, 2, 3, 2]] * 3, scorer
        assert int(result.tokens.max()) < 3 and result.nfe == 4


def test_learned_order_fixed_positions_and_determinism():
    model = tiny_model({"name": "lomdm"}, length=8)
    fixed = torch.tensor([2, 1, -1, -1, -1, -1, -1, -1])
    sampler = TopKSampler(steps=5, scorer="plackett-luce", temperature=0.8, top_p=0.9)
    a = sampler.sample(model, 4, 8, generator=torch.Generator().manual_seed(1), fixed=fixed)
    b = sampler.sample(model, 4, 8, generator=torch.Generator().manual_seed(1), fixed=fixed)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.order, b.order)
    assert torch.all(a.tokens[:, :2] == torch.tensor([2, 1]))
    assert torch.all(a.order[:, :2] == -1)
    assert bool(((a.order[:, 2:] >= 0) & (a.order[:, 2:] < 5)).all())
    assert bool((step_histogram(a.order, 5).sum(-1) == 6).all())


def test_confidence_order_with_mdm_picks_the_most_confident_position_first():
    model = tiny_model("mdm", length=6)
    fixed = torch.tensor([0, -1, -1, -1, -1, 2])
    sampler = registry.build("sampler", "topk", steps=4, scorer="confidence")
    result = sampler.sample(model, 1, 6, generator=torch.Generator().manual_seed(0), fixed=fixed)
    z = torch.where(fixed >= 0, fixed, model.mask_id)[None]
    conf = torch.softmax(model.denoise(z, torch.ones(1)).logits.double(), -1).max(-1).values
    conf[0, [0, 5]] = -1  # not candidates
    assert int(result.order[0].argmin()) in (0, 5)  # fixed → −1
    first = (result.order[0] == 0).nonzero().flatten().tolist()
    assert first == [int(conf.argmax())]


def test_topk_as_the_inner_rule_of_the_block_sampler():
    model = tiny_model({"name": "block", "block_size": 2}, length=6)
    sampler = registry.build("sampler", "block", inner="topk", steps=2, cache=False)
    result = sampler.sample(model, 2, 6, generator=torch.Generator().manual_seed(0))
    assert result.tokens.shape == (2, 6) and int(result.tokens.max()) < 3
    # blocks left to right: every position of block b is generated before block b + 1
    blocks = result.order.view(2, 3, 2)
    assert bool((blocks[:, :-1].max(-1).values < blocks[:, 1:].min(-1).values).all())
