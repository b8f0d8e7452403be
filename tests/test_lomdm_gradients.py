"""Unbiasedness of the learned-order gradient: Monte Carlo mean vs the exact gradient.

At a fixed time t the NELBO integrand is F(params) = Σ_masks q_φ(z_t | x) f(z_t), a finite
sum over the 2^L masks (`oemdm_core.nelbo.exact.exact_integrand`), so autograd gives its exact
gradient for every parameter: the forward head g_φ (through q and through the velocities),
the reverse head h_ψ and the shared backbone (through both paths). The estimator's gradient
(`model.nelbo(x, t=t).total.mean().backward()`) must match it in expectation.

Comparison: for every parameter tensor we project the gradient onto a few fixed random unit
directions and compare the Monte Carlo mean of each projection with the exact value, in
units of its standard error (batch means over M independent batches). Per-element z-scores
would mean tens of thousands of tests, several beyond 4 SE by chance alone, and elements with
no gradient at all (embeddings of absent tokens) have no spread; a random projection mixes
every element of the tensor, so any bias in any element shows up, with ~100 tests in all.
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from oemdm_core.nelbo.exact import exact_integrand

T_FIXED = 0.625  # exactly representable in float32, so MC and exact use the same time
DIRECTIONS = 3


def randomise_heads(model, scale: float = 0.3, seed: int = 1) -> None:
    """Give the order's heads weights large enough that w varies strongly over positions."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.order.named_parameters():
            if "head" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def exact_gradients(model, x: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    params = dict(model.named_parameters())
    value = exact_integrand(model, x, T_FIXED).total.sum()
    grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
    return float(value.detach()), {
        n: (g if g is not None else torch.zeros_like(p)).double()
        for (n, p), g in zip(params.items(), grads, strict=True)
    }


def monte_carlo_gradients(model, x, batches: int, rows: int, surrogate: bool = True, seed=0):
    """Per-batch mean gradients of the estimator: {name: [M, *shape]} and values [M]."""
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(seed)
    xs = x.expand(rows, -1).contiguous()
    t = torch.full((rows,), T_FIXED)
    samples = {n: [] for n in params}
    values = []
    for _ in range(batches):
        terms = model.nelbo(xs, t=t, generator=g)
        objective = terms.total if surrogate else terms.reconstruction + terms.velocity_matching
        grads = torch.autograd.grad(objective.mean(), list(params.values()), allow_unused=True)
        for (n, p), gr in zip(params.items(), grads, strict=True):
            samples[n].append((gr if gr is not None else torch.zeros_like(p)).double())
        values.append(float(terms.total.detach().mean()))
    return {n: torch.stack(v) for n, v in samples.items()}, torch.tensor(values)


def projection_z_scores(exact: dict, samples: dict, seed: int = 2) -> dict[str, torch.Tensor]:
    """z = (MC mean − exact) / SE for `DIRECTIONS` random unit projections per tensor."""
    g = torch.Generator().manual_seed(seed)
    scores = {}
    for name, ex in exact.items():
        dirs = torch.randn((DIRECTIONS, ex.numel()), generator=g, dtype=torch.float64)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        proj = samples[name].flatten(1) @ dirs.T  # [M, DIRECTIONS]
        target = dirs @ ex.flatten()  # [DIRECTIONS]
        se = proj.std(0) / proj.shape[0] ** 0.5
        diff = proj.mean(0) - target
        # A tensor without any gradient (SE 0) must match exactly (both zero).
        scores[name] = torch.where(se > 0, diff / se.clamp_min(1e-300), diff.abs() * 1e12)
    return scores


def check_unbiased(model, x, batches=24, rows=64):
    value, exact = exact_gradients(model, x)
    samples, values = monte_carlo_gradients(model, x, batches, rows)
    z = projection_z_scores(exact, samples)
    bad = {n: s.tolist() for n, s in z.items() if bool((s.abs() > 4).any())}
    assert not bad, f"gradient projections beyond 4 SE: {bad}"
    se = float(values.std() / batches**0.5)
    assert abs(float(values.mean()) - value) < 4 * se, (float(values.mean()), value, se)
    return exact, samples


# The defaults (stop-gradient features, linear schedulers), the block schedulers and the ablations that change which
# parameters the terms reach. With stop_gradient the target is the exact gradient with the
# scheduler features held constant: `exact_integrand` builds the forward schedule through
# `model.forward_schedule`, which runs the clean-x pass without gradient for such orders, and
# the reverse scheduler detaches the z_t hidden states itself.
GRADIENT_CONFIGS = {
    "defaults": {},
    "block": {"scheduler": "block"},
    "no-stop-gradient": {"stop_gradient": False, "scheduler": "linear"},
    "position-bias": {"position_bias": True},
    "log-spread": {"spread": "log"},
}


@pytest.mark.parametrize("options", GRADIENT_CONFIGS.values(), ids=GRADIENT_CONFIGS.keys())
def test_lomdm_gradient_matches_exact_enumeration(options):
    model = tiny_model({"name": "lomdm", "K": 2, **options}, vocab_size=3, length=5)
    randomise_heads(model)
    x = torch.tensor([[0, 2, 1, 1, 0]])
    exact, _ = check_unbiased(model, x)
    # The check has teeth: the score-function part for the forward head is far from zero.
    forward = [g for n, g in exact.items() if n.startswith("order.forward_head")]
    assert max(float(g.abs().max()) for g in forward) > 0
    if options.get("position_bias"):
        assert float(exact["order.forward_bias"].abs().max()) > 1e-3


def test_stop_gradient_keeps_the_scheduler_terms_out_of_the_backbone():
    """With stop_gradient the backbone's gradient is that of the reconstruction term alone
    at the drawn z_t; without it, the velocity-matching and score-function terms add to it."""
    x = torch.tensor([[0, 2, 1, 1, 0]]).expand(8, -1)
    t = torch.full((8,), T_FIXED)
    for stop, same in ((True, True), (False, False)):
        model = tiny_model(
            {"name": "lomdm", "stop_gradient": stop, "scheduler": "linear"}, length=5
        )
        randomise_heads(model)
        backbone = list(model.backbone.parameters())
        terms = model.nelbo(x, t=t, generator=torch.Generator().manual_seed(0))
        full = torch.autograd.grad(terms.total.mean(), backbone, retain_graph=True)
        recon = torch.autograd.grad(terms.reconstruction.mean(), backbone, allow_unused=True)
        equal = all(
            torch.allclose(a, b if b is not None else torch.zeros_like(a), atol=1e-7)
            for a, b in zip(full, recon, strict=True)
        )
        assert equal is same


def test_stop_gradient_runs_the_clean_pass_without_gradient():
    model = tiny_model({"name": "lomdm"}, length=5)
    seen = []
    model.backbone.register_forward_hook(lambda m, a, out: seen.append(out.hidden.requires_grad))
    model.nelbo(torch.tensor([[0, 2, 1, 1, 0]]), generator=torch.Generator().manual_seed(0))
    assert seen == [False, True]  # the clean x pass, then the z_t pass


def test_lomdm_gradient_with_batch_baseline_k1():
    model = tiny_model({"name": "lomdm", "K": 1, "shared_time": False}, vocab_size=3, length=4)
    randomise_heads(model, seed=3)
    check_unbiased(model, torch.tensor([[1, 0, 2, 2]]), batches=20, rows=64)


def test_without_score_function_term_the_gradient_is_biased():
    """Negative control: dropping the score-function term makes the forward head's (and
    the backbone's) gradient biased, and the projection test detects it."""
    model = tiny_model({"name": "lomdm", "scheduler": "linear"}, vocab_size=3, length=5)
    randomise_heads(model)
    x = torch.tensor([[0, 2, 1, 1, 0]])
    _, exact = exact_gradients(model, x)
    samples, _ = monte_carlo_gradients(model, x, batches=10, rows=64, surrogate=False)
    z = projection_z_scores(exact, samples)
    forward = [v for n, v in z.items() if n.startswith("order.forward_head")]
    assert max(float(v.abs().max()) for v in forward) > 4
