"""The single-draw NELBO estimate is unbiased: its mean matches the exact value (enumeration
over masks, `oemdm_core.nelbo.exact`) within 4 standard errors, with a fixed seed."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from oemdm_core import MonteCarloEstimator
from oemdm_core.nelbo.exact import all_sequences, exact_discrete_nelbo, exact_integrand, exact_nelbo

ORDERS = {
    "mdm": ("mdm", {}),
    "block": ({"name": "block", "block_size": 2}, {}),
    "ar": ("ar", {"attention": "causal"}),
}
REPEATS = 20  # draws per sequence in one call
REPLICATES = 16  # independent calls; the standard error comes from their spread


def mean_and_standard_error(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    return float(values.mean()), float(values.std() / values.numel() ** 0.5)


@pytest.mark.statistical
@pytest.mark.parametrize("estimator", ["auto", "generic"])
@pytest.mark.parametrize("steps", [None, 6])
@pytest.mark.parametrize("order", list(ORDERS))
def test_single_draw_mean_matches_exact(order, steps, estimator):
    spec, backbone = ORDERS[order]
    model = tiny_model(spec, **backbone)
    if estimator == "generic":
        model.estimator = MonteCarloEstimator()
    x = all_sequences(3, 4)[::2]  # [41, 4]
    generator = torch.Generator().manual_seed(1234)
    batch = x.repeat(REPEATS, 1)  # every sequence REPEATS times: [41·REPEATS, 4]
    with torch.no_grad():
        exact = exact_nelbo(model, x) if steps is None else exact_discrete_nelbo(model, x, steps)
        target = exact.total.repeat(REPEATS)  # the exact value of each row's sequence
        # Times are stratified across a batch (low-discrepancy), so rows of one call are not
        # independent: each call's mean error is one independent replicate.
        replicates = []
        for _ in range(REPLICATES):
            terms = model.nelbo(batch, steps=steps, generator=generator)
            assert terms.total.shape == (batch.shape[0],)
            replicates.append((terms.total.double() - target).mean())
    mean, se = mean_and_standard_error(torch.stack(replicates))
    assert abs(mean) <= 4 * se + 1e-5, (mean, se)
    # The test has power. The continuous-time integrand has heavy tails (~1/t near a window's
    # start), so there only a 25% bias is surely detected; in discrete time 2%.
    power = 0.25 if steps is None else 0.02
    assert 4 * se < power * float(exact.total.mean()), (se, float(exact.total.mean()))


@pytest.mark.statistical
@pytest.mark.parametrize("t", [0.1, 0.45, 0.8])
@pytest.mark.parametrize("order", list(ORDERS))
def test_estimate_at_fixed_time_matches_exact_integrand(order, t):
    spec, backbone = ORDERS[order]
    model = tiny_model(spec, **backbone)
    model.estimator = MonteCarloEstimator()
    x = all_sequences(3, 4)[::2]  # [41, 4]
    batch = x.repeat(200, 1)  # [8200, 4]
    generator = torch.Generator().manual_seed(99)
    with torch.no_grad():
        exact = exact_integrand(model, x, t).total.repeat(200)
        times = torch.full((batch.shape[0],), t)
        terms = model.nelbo(batch, t=times, generator=generator)
    torch.testing.assert_close(terms.t, times)
    # Given t the rows are independent draws of z_t.
    mean, se = mean_and_standard_error(terms.total.double() - exact)
    assert abs(mean) <= 4 * se + 1e-6, (mean, se)
    assert 4 * se < 0.1 * float(exact.mean()), (se, float(exact.mean()))


@pytest.mark.statistical
@pytest.mark.parametrize("steps", [None, 6])
def test_importance_sampled_times_are_unbiased_for_small_exponents(steps):
    """LoMDM with exponents down to w ≈ 0.2: uniform t gives an infinite-variance loss there;
    `times="importance"` must keep the expectation (the exact NELBO, or L_T) and a usable
    error. Control (discrete time, where the values stay finite): the proposal's times
    without their weights are detected as biased. In continuous time they are unbounded at
    t → 0 and break the error bound instead."""
    from oemdm_core.nelbo.exact import default_breakpoints
    from oemdm_core.nelbo.time_proposal import importance_times

    model = tiny_model({"name": "lomdm", "c1": 0.35, "c2": 0.3})
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.order.named_parameters():
            if "head" in name:
                p.copy_(torch.randn(p.shape, generator=generator))
    model.estimator = MonteCarloEstimator(times="importance")
    x = all_sequences(3, 4)[::4]  # [21, 4]
    batch = x.repeat(REPEATS, 1)
    with torch.no_grad():
        w = model.forward_schedule(x).w
        assert float(w.min()) < 0.25 and float(w.max()) > 0.45  # w < ½: the heavy-tailed regime
        if steps is None:
            breakpoints = default_breakpoints(4, grading=80)
            exact = exact_nelbo(model, x, breakpoints=breakpoints, nodes=6)
        else:
            exact = exact_discrete_nelbo(model, x, steps)
        target = exact.total.repeat(REPEATS)
        weighted, unweighted = [], []
        for _ in range(REPLICATES):
            terms = model.nelbo(batch, steps=steps, generator=generator)
            weighted.append((terms.total.double() - target).mean())
            if steps is None:
                continue
            u = torch.rand(batch.shape[0], generator=generator, dtype=torch.float64)
            t, _ = importance_times(u)  # times given to nelbo are used unweighted
            terms = model.nelbo(batch, t=t, steps=steps, generator=generator)
            unweighted.append((terms.total.double() - target).mean())
    mean, se = mean_and_standard_error(torch.stack(weighted))
    assert abs(mean) <= 4 * se + 1e-5, (mean, se)
    assert 4 * se < 0.1 * float(exact.total.mean()), (se, float(exact.total.mean()))
    if steps is not None:
        mean, se = mean_and_standard_error(torch.stack(unweighted))
        assert abs(mean) > 4 * se, (mean, se)
