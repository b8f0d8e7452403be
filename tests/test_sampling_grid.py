"""Sampling grids (issue 19, part 4): the equal-reveal grid's math, the samplers' `grid`
option, and the bound L_T on a grid (simulated paths against exact enumeration)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_model, tiny_run
from oemdm_lomdm import PowerSchedule

from oemdm_core import ConfigError, registry
from oemdm_core.cli import main
from oemdm_core.cli.eval import GRID_CHOICES
from oemdm_core.interfaces import GRIDS, Segment, StepGrid, equal_reveal_time, time_grid
from oemdm_core.nelbo import discrete_nelbo_on_grid
from oemdm_core.nelbo.exact import exact_discrete_nelbo, exact_discrete_nelbo_on_grid
from oemdm_core.runtime.evaluation.likelihood import evaluate
from oemdm_core.runtime.experiment import load_config
from oemdm_core.testing import check_sampler


def spread_lomdm(length: int = 4, c1: float = 0.7, c2: float = 0.65, seed: int = 1):
    """A tiny LoMDM whose exponents spread over (c1 − c2, c1 + c2) and depend on the state
    (its own encoder, scheduler heads with large weights) and whose denoiser depends on the
    context (backbone weights × 5), so that grids and bounds differ visibly."""
    model = tiny_model({"name": "lomdm", "c1": c1, "c2": c2, "features": "encoder"}, length=length)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.mul_(5.0)
        for head in (model.order.forward_head, model.order.reverse_head):
            torch.nn.init.normal_(head.weight, std=3.0)
    return model.eval()


def state(model, masked):
    """A state `[N, L]` with the mask at `masked` and token 0 elsewhere."""
    return torch.where(masked, model.mask_id, 0)


# -- the grid -------------------------------------------------------------------------------
def test_equal_reveal_solves_the_power_law_closed_form():
    g = torch.Generator().manual_seed(0)
    w = 0.05 + 1.95 * torch.rand(64, 8, generator=g, dtype=torch.float64)
    masked = torch.rand(64, 8, generator=g) < 0.6
    masked[:, 0] = True
    t = 0.1 + 0.9 * torch.rand(64, generator=g, dtype=torch.float64)
    for k in (2, 3, 7, 50):
        s = equal_reveal_time(PowerSchedule(w), masked, t, k).numpy()
        r = (s / t.numpy())[:, None]
        expected = np.where(masked.numpy(), 1.0 - r ** w.numpy(), 0.0).sum(-1)
        np.testing.assert_allclose(expected, masked.sum(-1).numpy() / k, atol=1e-9)
    # one shared exponent: 1 − r^w = 1/k, r = (1 − 1/k)^{1/w}
    one = torch.full((3, 5), 0.3, dtype=torch.float64)
    s = equal_reveal_time(PowerSchedule(one), torch.ones(3, 5, dtype=torch.bool), t[:3], 4)
    np.testing.assert_allclose(s / t[:3], (0.75) ** (1 / 0.3), rtol=1e-10)


def test_equal_reveal_on_mdm_linear_is_the_uniform_grid():
    model = tiny_model("mdm", length=6)
    z = torch.full((5, 6), model.mask_id)
    segment = Segment(z, model.mask_id, model.denoise, model.reverse_schedule)
    walk = StepGrid("equal-reveal", 10, rows=5)
    g = torch.Generator().manual_seed(0)
    for index, step in enumerate(time_grid(segment, 10)):
        t = walk.start(index)
        masked = torch.rand(5, 6, generator=g) < 0.5  # any state: a_R = 1 − s/t everywhere
        s = walk.end(index, model.reverse_schedule(state(model, masked), t, None), masked, t)
        torch.testing.assert_close(t, step.t, atol=1e-6, rtol=0)
        torch.testing.assert_close(s, step.s, atol=1e-6, rtol=0)


def test_equal_reveal_times_are_monotone_and_the_last_step_ends_at_t_end():
    g = torch.Generator().manual_seed(1)
    w = 0.05 + 1.3 * torch.rand(16, 6, generator=g, dtype=torch.float64)
    masked = torch.rand(16, 6, generator=g) < 0.7
    masked[:, 0] = True
    t = torch.full((16,), 0.8, dtype=torch.float64)
    ends = torch.stack([equal_reveal_time(PowerSchedule(w), masked, t, k) for k in range(1, 9)])
    assert (ends[0] == 0).all()  # k = 1: everything is revealed
    assert (ends[1:] > ends[:-1]).all() and (ends < t).all()  # more steps left: shorter step
    # a walk: times fall strictly, the last step ends at t_end = 0 (where α = 1)
    walk, state = StepGrid("equal-reveal", 6, rows=16), masked.clone()
    times = [walk.start(0)]
    for index in range(6):
        times.append(walk.end(index, PowerSchedule(w), state, times[-1]))
        state[:, index] = False
    times = torch.stack(times)
    assert (times[1:] < times[:-1]).all() and (times[-1] == 0).all()


@pytest.mark.parametrize("order", [{"name": "block", "block_size": 2}, "ar"])
@pytest.mark.parametrize("steps", [1, 3, 4, 9])
def test_equal_reveal_on_window_orders_is_finite_and_reveals_all(order, steps):
    attention = {"attention": "causal"} if order == "ar" else {}
    model = tiny_model(order, **attention)
    walk, masked = StepGrid("equal-reveal", steps, rows=3), torch.ones(3, 4, dtype=torch.bool)
    t = walk.start(0)
    for index in range(steps):
        s = walk.end(index, model.reverse_schedule(state(model, masked), t, None), masked, t)
        assert torch.isfinite(s).all() and (s <= t).all() and (s >= 0).all()
        t = walk.start(index + 1) if index + 1 < steps else s
    assert (t == 0).all()
    sampler = registry.build("sampler", "ancestral", steps=steps, grid="equal-reveal")
    result = sampler.sample(model, 5, generator=torch.Generator().manual_seed(0))
    assert (result.tokens < model.vocab_size).all() and (result.order >= 0).all()


def test_equal_reveal_makes_ar_generate_one_position_per_step():
    model = tiny_model("ar", attention="causal")
    sampler = registry.build("sampler", "ancestral", steps=4, grid="equal-reveal")
    result = sampler.sample(model, 6, generator=torch.Generator().manual_seed(0))
    assert (result.order == torch.arange(4)).all()


@pytest.mark.statistical
def test_equal_reveal_reveals_the_same_expected_count_every_step():
    """E[reveals at step j] = L/T for every j (E[n_j] = L(T − j)/T by induction); the uniform
    grid leaves the small-exponent positions for its last step."""
    model, steps, n = spread_lomdm(length=8), 4, 600
    counts = {}
    for grid in GRIDS:
        sampler = registry.build("sampler", "ancestral", steps=steps, grid=grid)
        order = sampler.sample(model, n, generator=torch.Generator().manual_seed(0)).order
        counts[grid] = torch.stack([(order == j).sum(-1) for j in range(steps)], -1).double()
    mean, se = counts["equal-reveal"].mean(0), counts["equal-reveal"].std(0) / n**0.5
    assert ((mean - 8 / steps).abs() < 4 * se).all(), (mean, se)
    last = counts["uniform"][:, -1]
    assert last.mean() - 8 / steps > 4 * last.std() / n**0.5, last.mean()


@pytest.mark.parametrize(
    "sampler", [("ancestral", {}), ("remdm", {"eta": 0.1}), ("remdm", {"strategy": "rescale"})]
)
def test_samplers_on_the_equal_reveal_grid_pass_the_conformance_kit(sampler):
    name, options = sampler
    check_sampler(registry.build("sampler", name, grid="equal-reveal", steps=5, **options))


def test_remdm_loop_refuses_the_equal_reveal_grid():
    with pytest.raises(ConfigError, match="strategy 'loop' sets its own model times"):
        registry.build(
            "sampler", "remdm", strategy="loop", t_on=0.5, t_off=0.1, grid="equal-reveal"
        )


def test_the_cli_spells_the_grids_as_the_core_does():
    assert GRID_CHOICES == GRIDS


# -- L_T on a grid ------------------------------------------------------------------------
X = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0]])


@pytest.mark.parametrize("grid", GRIDS)
def test_exact_bound_on_a_grid_recurses_over_the_chain(grid):
    """The recursion over states, on the uniform grid, is the enumeration over masks at
    fixed times; on the equal-reveal grid (state-dependent for spread exponents) it differs."""
    model = spread_lomdm()
    with torch.no_grad():
        tree = exact_discrete_nelbo_on_grid(model, X, 4, grid).total
        masks = exact_discrete_nelbo(model, X, 4).total
    if grid == "uniform":
        torch.testing.assert_close(tree, masks, rtol=1e-10, atol=1e-10)
    else:
        assert float((tree - masks).abs().max()) > 0.1, (tree, masks)


@pytest.mark.statistical
@pytest.mark.parametrize("grid", GRIDS)
def test_simulated_paths_estimate_the_exact_bound_on_the_grid(grid):
    model, n = spread_lomdm(), 6000
    with torch.no_grad():
        exact = exact_discrete_nelbo_on_grid(model, X, 4, grid).total
        path = discrete_nelbo_on_grid(
            model, X.repeat(n, 1), 4, grid, torch.Generator().manual_seed(0)
        ).total.view(n, 2)
    mean, se = path.mean(0).double(), path.std(0).double() / n**0.5
    assert ((mean - exact).abs() < 4 * se).all(), (mean, exact, se)


@pytest.mark.statistical
def test_uniform_paths_agree_with_the_one_step_estimator():
    model, n = spread_lomdm(), 6000
    x = X.repeat(n, 1)
    with torch.no_grad():
        path = discrete_nelbo_on_grid(model, x, 4, "uniform", torch.Generator().manual_seed(0))
        step = model.nelbo(x, steps=4, generator=torch.Generator().manual_seed(1))
    a, b = path.total.double().view(n, 2), step.total.double().view(n, 2)
    se = ((a.var(0) + b.var(0)) / n) ** 0.5
    assert ((a.mean(0) - b.mean(0)).abs() < 4 * se).all(), (a.mean(0), b.mean(0), se)


def test_evaluate_on_a_grid_names_it_and_repeats_itself():
    model = spread_lomdm()
    batches = [X, X.flip(0)]
    first = evaluate(model, batches, num_times=3, steps=4, grid="equal-reveal")
    again = evaluate(model, batches, num_times=3, steps=4, grid="equal-reveal")
    uniform = evaluate(model, batches, num_times=3, steps=4)
    assert first.grid == "equal-reveal" and uniform.grid == "uniform"
    assert first.bits_per_token == again.bits_per_token != uniform.bits_per_token
    assert evaluate(model, batches, num_times=2).grid is None
    with pytest.raises(ValueError, match="grid 'equal-reveal' is a grid of the T-step bound"):
        evaluate(model, batches, grid="equal-reveal")
    with pytest.raises(ValueError, match="unknown sampling grid 'even'; valid: uniform"):
        evaluate(model, batches, steps=4, grid="even")


def test_cli_eval_reports_the_grid(tmp_path, capsys):
    from oemdm_core.runtime.trainer import fit

    fit(load_config(overrides=tiny_run(tmp_path, "run", "training.steps=2")))
    out = tmp_path / "eval.json"
    args = ["eval", str(tmp_path / "run"), "--no-progress", "--steps", "8"]
    assert main([*args, "--grid", "equal-reveal", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["grid"] == "equal-reveal"
    assert main(["eval", str(tmp_path / "run"), "--grid", "equal-reveal"]) == 2
    err = capsys.readouterr().err
    assert "--grid equal-reveal is the grid of the T-step bound: add --steps T" in err
