"""The `remdm` remasking sampler: η = 0 is the ancestral sampler draw for draw, σ stays in
ReMDM's bounds, re-masked positions are recorded, prompts are never re-masked."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from oemdm_samplers import RemaskSampleResult

from oemdm_core import ConfigError, registry

ORDERS = ["mdm", "lomdm", "ar", {"name": "block", "block_size": 2}]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def model_for(order) -> torch.nn.Module:
    return tiny_model(order, vocab_size=5, length=8)


@pytest.mark.parametrize("order", ORDERS, ids=str)
@pytest.mark.parametrize("strategy", ["cap", "rescale", "confidence"])
def test_eta_zero_reproduces_the_ancestral_sampler_exactly(order, strategy):
    model = model_for(order)
    for steps in (3, 8, 20):
        ancestral = registry.build("sampler", "ancestral", steps=steps)
        remdm = registry.build("sampler", "remdm", steps=steps, strategy=strategy, eta=0.0)
        a = ancestral.sample(model, 6, generator=gen(steps))
        b = remdm.sample(model, 6, generator=gen(steps))
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.order, b.order)
        assert a.nfe == b.nfe
        assert not b.remasked.any() and (b.sigma == 0).all()


def test_remasking_respects_the_bounds_of_each_strategy():
    model = model_for("mdm")  # linear schedule: α_t = 1 − t, σ_max = min(1, s / (1 − t))
    steps = 10
    cases = (("cap", 0.3, "paper"), ("rescale", 0.5, "paper"), ("confidence", 1.0, "paper"))
    for strategy, eta, scale in (*cases, ("confidence", 0.5, "count")):
        sampler = registry.build(
            "sampler", "remdm", steps=steps, strategy=strategy, eta=eta, conf_scale=scale
        )
        r = sampler.sample(model, 16, generator=gen(1))
        masked_before = r.history[:-1] == model.mask_id  # [S, N, L]
        assert (r.sigma[masked_before] == 0).all()  # σ lives on decoded positions only
        for j in range(r.steps):
            t, s = (steps - j) / steps, (steps - j - 1) / steps
            sigma_max = min(1.0, s / (1 - t)) if t < 1 else 0.0  # float32 times: 1e-6
            decoded = ~masked_before[j]
            got = r.sigma[j][decoded]
            assert (got >= 0).all() and (got <= sigma_max + 1e-6).all()
            if strategy == "cap":
                assert torch.allclose(got, torch.full_like(got, min(eta, sigma_max)), atol=1e-6)
            elif strategy == "rescale":
                assert torch.allclose(got, torch.full_like(got, eta * sigma_max), atol=1e-6)
            else:  # softmax(−ψ) weights on the decoded positions times η·σ_max
                if j == r.steps // 2:  # confidences differ, so σ does too
                    assert float(got.max() - got.min()) > 1e-9
                for n in range(16):
                    row = r.sigma[j, n][decoded[n]]
                    if row.numel() == 0:
                        continue
                    if scale == "paper":  # the weights sum to 1
                        assert float(row.sum()) == pytest.approx(eta * sigma_max, abs=1e-6)
                    else:  # the rescale budget n·η·σ_max, redistributed (clipped at σ_max)
                        assert float(row.sum()) <= eta * sigma_max * row.numel() + 1e-6
        assert r.sigma[-1].eq(0).all()  # the last step (s = 0) re-masks nothing


def test_remasking_happens_and_the_history_records_it():
    model = model_for("lomdm")
    r = registry.build("sampler", "remdm", steps=16, strategy="rescale", eta=1.0).sample(
        model, 8, generator=gen(2)
    )
    assert isinstance(r, RemaskSampleResult)
    assert r.remasked.any() and int(r.num_remasked.sum()) == int(r.remasked.sum())
    assert r.history.shape == (r.steps + 1, 8, 8) and r.sigma.shape == (r.steps, 8, 8)
    assert (r.history[0] == model.mask_id).all() and torch.equal(r.history[-1], r.tokens)
    for j in range(r.steps):  # a re-masked position was decoded before and is masked after
        before, after = r.history[j], r.history[j + 1]
        assert (before[r.remasked[j]] != model.mask_id).all()
        assert (after[r.remasked[j]] == model.mask_id).all()
    assert (r.tokens >= 0).all() and (r.tokens < model.vocab_size).all()
    assert (r.order >= 0).all() and (r.order < r.steps).all()
    for n, i in zip(*torch.nonzero(r.history[-2] == model.mask_id, as_tuple=True), strict=True):
        assert r.order[n, i] == r.steps - 1  # the last un-masking counts


def test_prompt_is_kept_and_never_remasked_and_sampling_is_seeded():
    model = model_for("mdm")
    sampler = registry.build("sampler", "remdm", steps=12, strategy="cap", eta=1.0)
    prompt = torch.tensor([1, 2, 3])
    a = sampler.sample(model, 5, generator=gen(3), fixed=prompt)
    b = sampler.sample(model, 5, generator=gen(3), fixed=prompt)
    c = sampler.sample(model, 5, generator=gen(4), fixed=prompt)
    assert (a.tokens[:, :3] == prompt).all() and (a.order[:, :3] == -1).all()
    assert not a.remasked[:, :, :3].any() and a.remasked.any()
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.history, b.history)
    assert not torch.equal(a.history, c.history)


def test_remdm_fills_the_blocks_of_the_block_sampler():
    model = tiny_model(
        {"name": "block", "block_size": 2},
        vocab_size=5,
        length=8,
        attention="block_causal",
        block_size=2,
    )
    plain = registry.build("sampler", "block", steps=4, inner="ancestral")
    # η = 0: the same draws as the ancestral inner rule
    remask = registry.get("sampler", "block")(
        inner=registry.build("sampler", "remdm", steps=4, eta=0.0)
    )
    a, b = (s.sample(model, 3, generator=gen(5)) for s in (plain, remask))
    assert torch.equal(a.tokens, b.tokens)


def test_history_can_be_switched_off():
    r = registry.build("sampler", "remdm", steps=4, history=False).sample(
        model_for("mdm"), 2, generator=gen(0)
    )
    assert r.history is None and r.sigma is None and r.num_remasked is None
    assert r.steps == 4 and r.tokens.shape == (2, 8)


def test_bad_options_are_one_line_naming_the_value():
    with pytest.raises(ConfigError, match=r"sampler\[remdm\]\.eta: got 1.5; .*<= 1"):
        registry.build("sampler", "remdm", eta=1.5)
    with pytest.raises(ConfigError, match=r"sampler\[remdm\]\.strategy: got 'switch'"):
        registry.build("sampler", "remdm", strategy="switch")
    with pytest.raises(ValueError, match="t_off < t_on.*t_off=0.5, t_on=0.4"):
        registry.build("sampler", "remdm", t_on=0.4, t_off=0.5)
    with pytest.raises(ConfigError, match="steps"):
        registry.build("sampler", "remdm", steps=0)


def test_loop_freezes_alpha_inside_the_window_and_remasks_at_a_constant_level():
    model = model_for("mdm")  # linear: α(t_on) = 1 − t_on
    steps, t_on, t_off, eta = 20, 0.55, 0.05, 0.3
    sampler = registry.build(
        "sampler", "remdm", steps=steps, strategy="loop", t_on=t_on, t_off=t_off, eta=eta
    )
    assert sampler.model_time(0.9) == 0.9 and sampler.model_time(0.3) == t_on
    assert sampler.model_time(0.025) == pytest.approx(0.025 * t_on / t_off)
    r = sampler.sample(model, 32, generator=gen(6))
    alpha = 1 - t_on
    sigma_max = min(1.0, (1 - alpha) / alpha)
    for j in range(r.steps):
        tau = (steps - j) / steps
        decoded = r.history[j] != model.mask_id
        got = r.sigma[j][decoded]
        if t_off < tau <= t_on:  # in the loop: σ = min(η, (1 − α)/α) on every decoded token
            assert torch.allclose(got, torch.full_like(got, min(eta, sigma_max)), atol=1e-6)
        else:
            assert (got == 0).all()
    in_loop = [j for j in range(r.steps) if t_off < (steps - j) / steps <= t_on]
    masked = (r.history == model.mask_id).double().mean((1, 2))  # [S + 1]
    assert r.remasked[in_loop].any()
    # the masking level stays near 1 − α(t_on) = t_on while α is frozen
    assert abs(float(masked[in_loop].mean()) - t_on) < 0.1
    assert (r.tokens != model.mask_id).all() and (r.tokens < model.vocab_size).all()
    with pytest.raises(ValueError, match="strategy 'loop' needs 0 < t_off < t_on < 1"):
        registry.build("sampler", "remdm", strategy="loop")


def test_loop_at_the_papers_masking_level():
    model = model_for("mdm")  # linear: t_loop = 0.1 is α = 0.9 in the loop
    sampler = registry.build(
        "sampler", "remdm", steps=40, strategy="loop", t_on=0.55, t_off=0.05, t_loop=0.1, eta=0.5
    )
    assert sampler.model_time(1.0) == 1.0 and sampler.model_time(0.55) == pytest.approx(0.1)
    assert sampler.model_time(0.775) == pytest.approx(0.55)  # halfway: 1 → t_loop linearly
    r = sampler.sample(model, 32, generator=gen(7))
    in_loop = [j for j in range(r.steps) if 0.05 < (40 - j) / 40 <= 0.55]
    decoded = r.history[in_loop] != model.mask_id
    sigma = r.sigma[in_loop][decoded]
    assert torch.allclose(sigma, torch.full_like(sigma, (1 - 0.9) / 0.9), atol=1e-5)
    masked = (r.history[in_loop] == model.mask_id).double().mean()
    assert abs(float(masked) - 0.1) < 0.05
    with pytest.raises(ConfigError, match="t_loop"):
        registry.build("sampler", "remdm", strategy="loop", t_on=0.5, t_off=0.1, t_loop=1.0)
