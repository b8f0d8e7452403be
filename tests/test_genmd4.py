"""The `genmd4` order: token-keyed exponents, unbiased gradients, a sampleable reverse."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from test_lomdm_gradients import check_unbiased

from oemdm_core import ConfigError, DenoiserOutput, registry


def randomise_exponents(model, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.order.rho.copy_(torch.randn(model.order.rho.shape, generator=g))


def test_registered_with_validated_options():
    assert "genmd4" in registry.available("order")
    with pytest.raises(ConfigError, match=r"order\.K"):
        tiny_model({"name": "genmd4", "K": 0})
    with pytest.raises(ConfigError, match=r"order\.init"):
        tiny_model({"name": "genmd4", "init": 0.0})
    with pytest.raises(ConfigError, match=r"order\.shared_time: .*needs K >= 2"):
        tiny_model({"name": "genmd4", "K": 1})
    with pytest.raises(ConfigError, match=r"order\.t_min"):
        tiny_model({"name": "genmd4", "t_min": 0.7})


def test_one_exponent_per_vocabulary_item():
    model = tiny_model({"name": "genmd4", "init": 0.8}, vocab_size=5, length=4)
    assert model.order.rho.shape == (5,)
    torch.testing.assert_close(model.order.weights(), torch.full((5,), 0.8))
    randomise_exponents(model)
    x = torch.tensor([[0, 4, 4, 2]])
    w = model.order.weights()
    torch.testing.assert_close(model.forward_schedule(x).w, w[x])
    torch.testing.assert_close(
        model.forward_schedule(x).alpha(torch.tensor([0.3])), 1 - 0.3 ** w[x]
    )


def test_init_one_is_mdm_with_the_linear_schedule():
    genmd4 = tiny_model({"name": "genmd4", "K": 1, "shared_time": False}, length=5)
    mdm = tiny_model("mdm", "linear", length=5)
    x = torch.randint(0, 3, (12, 5), generator=torch.Generator().manual_seed(0))
    a = genmd4.nelbo(x, generator=torch.Generator().manual_seed(3))
    b = mdm.nelbo(x, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a.total, b.total, rtol=1e-6, atol=1e-6)
    assert torch.all(a.velocity_matching.abs() < 1e-6)  # ŵ = 1/Σ p/1 = 1 = w


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_gradient_matches_exact_enumeration(stop_gradient):
    order = {"name": "genmd4", "K": 2, "stop_gradient": stop_gradient}
    model = tiny_model(order, vocab_size=3, length=5)
    randomise_exponents(model)
    exact, _ = check_unbiased(model, torch.tensor([[0, 2, 1, 1, 0]]), batches=20, rows=64)
    assert float(exact["order.rho"].abs().max()) > 0


def test_reverse_exponent_is_the_posterior_mean_under_the_tilted_denoiser():
    """ŵ = 1 / Σ_v p(v)/w[v]: if p is the w-tilted posterior p ∝ w·post (the minimiser of the
    velocity-weighted reconstruction term), ŵ = Σ_v post(v) w[v] = E[w | z_t]."""
    model = tiny_model({"name": "genmd4"}, vocab_size=4, length=3)
    randomise_exponents(model, seed=1)
    w = model.order.weights().detach()
    post = torch.softmax(torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(2)), -1)
    tilted = w * post / (w * post).sum(-1, keepdim=True)
    z = torch.tensor([[3, 4, 4], [4, 0, 4]])  # id 4 is the mask
    out = DenoiserOutput(logits=tilted.log())
    rs = model.order.reverse_schedule(z, torch.full((2,), 0.5), None, out)
    expected = torch.where(z < 4, w[z.clamp(max=3)], (post * w).sum(-1))
    torch.testing.assert_close(rs.w.detach(), expected)
    with pytest.raises(ValueError, match="logits"):
        model.order.reverse_schedule(z, torch.full((2,), 0.5), None)


def test_velocity_matching_is_nonnegative_and_trains_both_sides():
    model = tiny_model({"name": "genmd4"}, length=6)
    randomise_exponents(model)
    x = torch.randint(0, 3, (32, 6), generator=torch.Generator().manual_seed(0))
    terms = model.nelbo(x, generator=torch.Generator().manual_seed(1))
    assert bool((terms.velocity_matching >= 0).all())
    assert float(terms.velocity_matching.detach().max()) > 0
    terms.total.mean().backward()
    assert float(model.order.rho.grad.abs().sum()) > 0
    assert float(model.backbone.head.weight.grad.abs().sum()) > 0


def test_can_be_sampled_with_ancestral_and_topk():
    model = tiny_model({"name": "genmd4"}, length=6)
    randomise_exponents(model)
    for sampler in (
        registry.build("sampler", "ancestral", steps=6),
        registry.build("sampler", "topk", steps=3, scorer="plackett-luce"),
    ):
        result = sampler.sample(model, 4, 6, generator=torch.Generator().manual_seed(0))
        assert result.tokens.shape == (4, 6) and int(result.tokens.max()) < 3
        assert bool((result.order >= 0).all())
