"""The `ancestral` sampler and the shared categorical draws (float64 Gumbel, temperature,
nucleus)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from oemdm_core import ConfigError, registry
from oemdm_core.interfaces.draws import gumbel_noise, sample_tokens, top_p_filter

L = 4


def sampler(**options):
    return registry.build("sampler", "ancestral", **options)


def draw(model, seed=0, n=6, **options):
    result = sampler(**options).sample(
        model, num_samples=n, length=L, generator=torch.Generator().manual_seed(seed)
    )
    return result


@pytest.fixture(scope="module")
def mdm():
    return tiny_model("mdm")


@pytest.fixture(scope="module")
def ar():
    return tiny_model("ar", attention="causal")


@pytest.mark.parametrize("order", ["mdm", {"name": "block", "block_size": 2}, "ar"])
@pytest.mark.parametrize("steps", [1, 3, 16])
def test_tokens_are_clean_and_every_position_gets_a_step(order, steps):
    model = tiny_model(order)
    result = draw(model, steps=steps)
    assert result.tokens.shape == (6, L) and result.order.shape == (6, L)
    assert int(result.tokens.min()) >= 0 and int(result.tokens.max()) < model.vocab_size
    assert int(result.order.min()) >= 0 and int(result.order.max()) < steps


def test_ar_order_generates_left_to_right(ar):
    result = draw(ar, steps=L)
    assert (result.order == torch.arange(L)).all()
    result = draw(ar, steps=3 * L)
    assert (result.order[:, 1:] > result.order[:, :-1]).all()


def test_block_order_generates_blocks_in_sequence():
    result = draw(tiny_model({"name": "block", "block_size": 2}), steps=10, n=20)
    assert (result.order[:, :2].max(-1).values < result.order[:, 2:].min(-1).values).all()


def test_fixed_prefix_is_kept_and_marked(mdm):
    prefix = torch.tensor([2, 0])
    result = sampler(steps=8).sample(
        mdm, num_samples=5, length=L, fixed=prefix, generator=torch.Generator().manual_seed(0)
    )
    assert (result.tokens[:, :2] == prefix).all()
    assert (result.order[:, :2] == -1).all() and (result.order[:, 2:] >= 0).all()
    infill = torch.tensor([[-1, 1, -1, 2]] * 5)
    result = sampler(steps=8).sample(mdm, num_samples=5, length=L, fixed=infill)
    assert (result.tokens[:, [1, 3]] == torch.tensor([1, 2])).all()
    assert (result.order[:, [1, 3]] == -1).all() and (result.order[:, [0, 2]] >= 0).all()


def test_cache_calls_the_network_once_per_distinct_state(mdm):
    # One sample passes through at most L + 1 distinct states; a batch of N changes state
    # at most N·L times.
    assert draw(mdm, n=1, steps=200).nfe <= L + 1
    cached = draw(mdm, steps=200)
    assert cached.nfe <= 6 * L + 1
    uncached = draw(mdm, steps=200, cache=False)
    assert uncached.nfe > 50
    # The cache changes nothing but the number of calls.
    assert torch.equal(cached.tokens, uncached.tokens) and torch.equal(cached.order, uncached.order)


def test_no_cache_for_time_conditioned_backbones():
    model = tiny_model("mdm", time_conditioning=True)
    assert draw(model, steps=40, n=2).nfe > L + 1


def test_same_seed_same_sample(mdm):
    a, b = draw(mdm, seed=3, steps=8), draw(mdm, seed=3, steps=8)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.order, b.order)
    c = draw(mdm, seed=4, steps=8, n=32)
    d = draw(mdm, seed=5, steps=8, n=32)
    assert not torch.equal(c.tokens, d.tokens)


def test_gumbel_noise_is_float64_and_gumbel_distributed():
    g = torch.Generator().manual_seed(0)
    noise = gumbel_noise((200_000,), g, torch.device("cpu"))
    assert noise.dtype == torch.float64 and torch.isfinite(noise).all()
    # Gumbel(0, 1): mean = Euler–Mascheroni constant, variance = π²/6.
    se = (torch.pi**2 / 6 / noise.numel()) ** 0.5
    assert abs(float(noise.mean()) - 0.5772156649) < 4 * se
    assert abs(float(noise.var()) - torch.pi**2 / 6) < 0.02


def test_sample_tokens_follows_the_softmax():
    logits = torch.tensor([[1.0, 0.0, -1.0, 2.0]]).expand(50_000, 4)
    draws = sample_tokens(logits, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / draws.numel()
    probs = torch.softmax(logits[0].double(), -1)
    se = (probs * (1 - probs) / draws.numel()).sqrt()
    assert ((freq - probs).abs() < 4 * se).all()


def test_temperature_zero_is_argmax(ar):
    logits = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_tokens(logits, temperature=0.0), logits.argmax(-1))
    # Greedy AR decoding, by hand, equals the sampler at temperature 0 for any seed.
    z = torch.full((1, L), ar.mask_id)
    with torch.no_grad():
        for i in range(L):
            z[0, i] = ar.denoise(z).logits[0, i].argmax()
    for seed in (0, 1):
        result = draw(ar, seed=seed, n=2, steps=L, temperature=0.0)
        assert (result.tokens == z).all()


def test_top_p_keeps_the_smallest_set_reaching_p():
    logp = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=torch.float64))
    kept = torch.isfinite(top_p_filter(logp, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(top_p_filter(logp, 0.81))
    assert kept.tolist() == [[True, True, True, False]]
    assert torch.isfinite(top_p_filter(logp, 1e-6)).sum() == 1  # the top token always stays
    assert torch.equal(top_p_filter(logp, 1.0), logp)


def test_tiny_top_p_is_greedy(ar):
    greedy = draw(ar, seed=0, n=3, steps=L, temperature=0.0)
    nucleus = draw(ar, seed=7, n=3, steps=L, top_p=1e-6)
    assert torch.equal(greedy.tokens, nucleus.tokens)


@pytest.mark.parametrize(
    ("options", "field"),
    [({"top_p": 0.0}, "top_p"), ({"top_p": 1.01}, "top_p"), ({"steps": 0}, "steps")],
)
def test_options_are_validated(options, field):
    with pytest.raises(ConfigError, match=rf"sampler\[ancestral\]\.{field}"):
        sampler(**options)
    with pytest.raises(ValueError, match=field):
        registry.get("sampler", "ancestral")(**options)
