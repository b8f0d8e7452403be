"""Evaluation: the time proposal, determinism, and agreement with exact enumeration,
including learned power-law schedules whose integrand is singular at t → 0."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_model

from oemdm_core.nelbo.exact import exact_discrete_nelbo, exact_nelbo
from oemdm_core.nelbo.time_proposal import proposal_cdf, proposal_density, proposal_quantile
from oemdm_core.runtime.evaluation.likelihood import evaluate, evaluation_times


def spread_lomdm():
    """A tiny lomdm model whose forward exponents reach below ½ (the singular regime)."""
    model = tiny_model(
        {"name": "lomdm", "K": 1, "shared_time": False, "scheduler": "linear"}
    ).double()
    with torch.no_grad():
        model.order.forward_head.weight.normal_(
            0.0, 3.0, generator=torch.Generator().manual_seed(1)
        )
    return model


def test_quantile_inverts_the_cdf_with_relative_precision():
    u = torch.tensor([1e-6, 1e-3, 0.2, 0.5, 0.9, 1.0], dtype=torch.float64)
    t = proposal_quantile(u)
    torch.testing.assert_close(proposal_cdf(t), u, rtol=1e-12, atol=0)
    # the density is the CDF's derivative
    t = torch.tensor([1e-8, 0.01, 0.5, 0.99], dtype=torch.float64)
    h = 1e-7 * t
    torch.testing.assert_close(
        (proposal_cdf(t + h) - proposal_cdf(t - h)) / (2 * h),
        proposal_density(t),
        rtol=1e-6,
        atol=0,
    )


@pytest.mark.parametrize("w", [0.05, 0.1, 0.5, 1.0, 2.0])
def test_grid_integrates_power_law_integrands(w):
    # ∫ w t^{w−1} dt = 1, the per-position integrand of α = 1 − t^w; a 16-point midpoint
    # rule in t gives 0.38 at w = 0.05, the proposal's grid within 0.5 %.
    n = 16
    total = 0.0
    for j in range(n):
        t, weight = evaluation_times(1, j, n, "deterministic")
        total += float(weight[0] * w * t.double()[0] ** (w - 1)) / n
    assert abs(total - 1.0) < 5e-3


def test_deterministic_mode_repeats_exactly():
    model = tiny_model("mdm")
    x = torch.randint(0, 3, (8, 4), generator=torch.Generator().manual_seed(0))
    first = evaluate(model, [x], num_times=4)
    second = evaluate(model, [x], num_times=4)
    assert first == second
    other_seed = evaluate(model, [x], num_times=4, seed=1)
    assert other_seed.nats_per_sequence != first.nats_per_sequence


@pytest.mark.statistical
@pytest.mark.parametrize("steps", [None, 8])
@pytest.mark.parametrize("mode", ["deterministic", "monte-carlo"])
def test_agrees_with_exact_enumeration_for_lomdm_with_small_exponents(mode, steps):
    model = spread_lomdm()
    x = torch.tensor([[0, 2, 1, 1]])
    assert float(model.forward_schedule(x).w.detach().min()) < 0.5
    if steps is None:
        exact = float(exact_nelbo(model, x).total.detach())
    else:
        exact = float(exact_discrete_nelbo(model, x, steps=steps).total.detach())
    result = evaluate(model, [x.repeat(256, 1)], mode=mode, num_times=16, steps=steps)
    stderr = result.stderr_bits * 4 * math.log(2.0)
    assert abs(result.nats_per_sequence - exact) < 4 * stderr


@pytest.mark.statistical
@pytest.mark.parametrize("order", ["mdm", "ar", {"name": "block", "block_size": 2}])
def test_agrees_with_exact_enumeration_for_fixed_orders(order):
    model = tiny_model(order).double()
    x = torch.tensor([[1, 0, 2, 2]])
    exact = float(exact_nelbo(model, x).total.detach())
    result = evaluate(model, [x.repeat(256, 1)], mode="monte-carlo", num_times=8)
    stderr = result.stderr_bits * 4 * math.log(2.0)
    assert abs(result.nats_per_sequence - exact) < 4 * stderr


def test_bad_arguments_are_named():
    model = tiny_model("mdm")
    x = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="mode"):
        evaluate(model, [x], mode="exact")
    with pytest.raises(ValueError, match="num_times"):
        evaluate(model, [x], num_times=0)
    with pytest.raises(ValueError, match="empty"):
        evaluate(model, [])
