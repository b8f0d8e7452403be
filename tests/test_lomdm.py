"""The `lomdm` order: options, the power schedule, identities, sampling, checkpoints."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from oemdm_lomdm import LoMDM, PowerSchedule, norm_sig
from torch import nn

from oemdm_core import Backbone, ConfigError, DenoiserOutput, OeMDM, registry
from oemdm_core.nelbo.exact import default_breakpoints, exact_integrand, exact_nelbo
from oemdm_core.nelbo.terms import continuous_integrand


def randomise_heads(model, scale: float, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.order.named_parameters():
            if "head" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


# -- options and bad input -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"c1": 0.5, "c2": 0.5}, "c2"),
        ({"c1": 0.5}, "c2"),  # c1 below the default c2
        ({"c2": -0.1}, "c2"),
        ({"K": 0}, "K"),
        ({"features": "cnn"}, "features"),
        ({"c3": 1.0}, "c3"),
        ({"K": 1}, "shared_time"),  # the K draws cannot share a time when there is one
        ({"t_min": 0.5}, "t_min"),
        ({"t_min": -1e-3}, "t_min"),
        ({"scheduler": "mlp"}, "scheduler"),
        ({"stop_gradient": "sometimes"}, "stop_gradient"),
    ],
)
def test_bad_options_name_the_field(options, field):
    with pytest.raises(ConfigError, match=rf"order\.{field}"):
        tiny_model({"name": "lomdm", **options})
    with pytest.raises(ConfigError, match=field):
        registry.build("order", "lomdm", **options)


def test_direct_construction_validates_too():
    with pytest.raises(ConfigError, match="c2 must be smaller than c1"):
        LoMDM(c1=0.3, c2=0.4)


class NoHidden(Backbone):
    """A denoiser without hidden states (a unigram model)."""

    name = "no-hidden"
    exposes_hidden = False

    def __init__(self, vocab_size: int = 3, max_length: int = 4) -> None:
        super().__init__()
        self.vocab_size, self.max_length, self.hidden_size = vocab_size, max_length, 0
        self.attention, self.uses_time = "bidirectional", False
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, tokens, t=None):
        return DenoiserOutput(logits=self.bias.expand(*tokens.shape, -1))


def test_backbone_without_hidden_states_is_a_clear_error():
    schedule = registry.build("schedule", "linear")
    for scheduler in ("block", "linear"):
        with pytest.raises(
            ConfigError,
            match=rf"order.features='backbone': the {scheduler} .*no-hidden.*features='encoder'",
        ):
            OeMDM(NoHidden(), LoMDM(scheduler=scheduler), schedule)
    # The small separate encoder needs no backbone hidden states.
    model = OeMDM(NoHidden(), LoMDM(features="encoder"), schedule)
    x = torch.randint(0, 3, (4, 4), generator=torch.Generator().manual_seed(0))
    model.nelbo(x, generator=torch.Generator().manual_seed(1)).total.mean().backward()
    assert model.order.encoder.embed.weight.grad.abs().sum() > 0


# -- the power schedule ----------------------------------------------------------------------
def test_power_schedule_formulas_and_edges():
    w = torch.tensor([[0.3, 1.0, 2.5]], dtype=torch.float64, requires_grad=True)
    sched = PowerSchedule(w)
    t = torch.tensor([0.4], dtype=torch.float64)
    torch.testing.assert_close(sched.alpha(t), 1 - 0.4**w)
    torch.testing.assert_close(sched.log_alpha(t), torch.log(1 - 0.4**w))
    torch.testing.assert_close(sched.log_one_minus_alpha(t), w * torch.log(t))
    torch.testing.assert_close(sched.unmask_probability(0.1, t), 1 - 0.25**w)
    # velocity = −∂_t α / (1 − α) = w / t, checked with autograd in t
    tt = torch.tensor([0.4], dtype=torch.float64, requires_grad=True)
    alpha = PowerSchedule(w.detach()).alpha(tt)
    dalpha = torch.stack([torch.autograd.grad(a, tt, retain_graph=True)[0] for a in alpha[0]])
    torch.testing.assert_close(sched.velocity(t)[0], -dalpha[:, 0] / (1 - alpha[0].detach()))
    # edges: t = 0 (all clean, velocity 0) and t = 1 (all masked)
    for time, alpha_value in ((0.0, 1.0), (1.0, 0.0)):
        values = [
            sched.alpha(time),
            sched.velocity(time),
            sched.log_alpha(time),
            sched.log_one_minus_alpha(time),
            sched.unmask_probability(0.0, time),
        ]
        assert torch.all(sched.alpha(time) == alpha_value)
        assert not any(bool(v.isnan().any()) for v in values)
        finite = [torch.where(v.isfinite(), v, 0).sum() for v in values]
        (grad,) = torch.autograd.grad(sum(finite), w)
        assert bool(grad.isfinite().all()), (time, grad)
    assert torch.all(sched.velocity(0.0) == 0)
    assert torch.all(sched.unmask_probability(0.0, 0.7) == 1)
    assert torch.all(sched.unmask_probability(0.0, 0.0) == 0)


def test_exponents_stay_in_range():
    v = torch.randn(8, 16) * 10
    ns = norm_sig(v)
    torch.testing.assert_close(ns.mean(-1), torch.zeros(8), atol=1e-6, rtol=0)
    model = tiny_model({"name": "lomdm", "c1": 0.7, "c2": 0.65, "scheduler": "linear"}, length=8)
    randomise_heads(model, scale=5.0)
    x = torch.randint(0, 3, (16, 8), generator=torch.Generator().manual_seed(0))
    w = model.forward_schedule(x).w
    assert bool((w > 0.05).all() and (w < 1.35).all())
    assert float(w.detach().std()) > 0.05  # depends on the data and position


# -- identities ------------------------------------------------------------------------------
def test_c1_1_c2_0_is_mdm_with_the_linear_schedule():
    lomdm = tiny_model(
        {"name": "lomdm", "c1": 1.0, "c2": 0.0, "K": 1, "shared_time": False, "times": "uniform"},
        length=6,
    )
    mdm = tiny_model("mdm", "linear", length=6)
    x = torch.randint(0, 3, (16, 6), generator=torch.Generator().manual_seed(0))
    a = lomdm.nelbo(x, generator=torch.Generator().manual_seed(5))
    b = mdm.nelbo(x, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.t, b.t, rtol=0, atol=0)
    torch.testing.assert_close(a.num_masked, b.num_masked, rtol=0, atol=0)
    torch.testing.assert_close(a.total, b.total, rtol=1e-6, atol=1e-6)
    assert torch.all(a.velocity_matching == 0)
    for steps in (4, None):
        a = lomdm.nelbo(x, steps=steps, generator=torch.Generator().manual_seed(6))
        b = mdm.nelbo(x, steps=steps, generator=torch.Generator().manual_seed(6))
        torch.testing.assert_close(a.total, b.total, rtol=1e-5, atol=1e-5)


def test_velocity_term_is_nonnegative_and_zero_when_reverse_equals_forward():
    model = tiny_model({"name": "lomdm"}, length=6)
    randomise_heads(model, scale=1.0)
    x = torch.randint(0, 3, (64, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        terms = model.nelbo(x, generator=torch.Generator().manual_seed(1))
    assert bool((terms.velocity_matching >= 0).all())
    assert float(terms.velocity_matching.max()) > 0
    # reverse = forward: the Bregman divergence is exactly 0
    w = model.forward_schedule(x).w.detach()
    masked = torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) < 0.5
    ce = torch.rand(x.shape)
    t = torch.full((64,), 0.3)
    _, matching = continuous_integrand(ce, masked, PowerSchedule(w), PowerSchedule(w.clone()), t)
    assert torch.all(matching == 0)
    # c2 = 0: forward and reverse are both 1 − t^{c1}
    poly = tiny_model({"name": "lomdm", "c1": 0.8, "c2": 0.0}, length=6)
    with torch.no_grad():
        assert torch.all(poly.nelbo(x, generator=torch.Generator()).velocity_matching == 0)


def test_scaling_all_exponents_leaves_the_exact_nelbo_unchanged():
    """w → c·w is the time warp t → t^c (fact 3), for the forward and the reverse alike."""
    x = torch.tensor([[0, 2, 1, 1], [2, 2, 0, 1]])
    # Pieces graded geometrically towards t = 0, where the integrand ~ t^(w−1) is singular.
    breakpoints = default_breakpoints(4, grading=20)

    def nelbo(c1, c2):
        model = tiny_model({"name": "lomdm", "c1": c1, "c2": c2, "scheduler": "linear"}, length=4)
        randomise_heads(model, scale=1.0)
        with torch.no_grad():
            return exact_nelbo(model, x, breakpoints=breakpoints, nodes=6).total

    base = nelbo(0.9, 0.5)
    for scale in (0.75, 1.5):
        torch.testing.assert_close(nelbo(0.9 * scale, 0.5 * scale), base, rtol=1e-4, atol=0)
    # a change of shape (not of scale) does change it
    assert float((nelbo(0.9, 0.2) - base).abs().max()) > 1e-2


@pytest.mark.parametrize("scheduler", ["block", "linear"])
def test_exact_integrand_is_differentiable_for_every_parameter(scheduler):
    model = tiny_model({"name": "lomdm", "scheduler": scheduler}, length=4)
    randomise_heads(model, scale=0.5)
    value = exact_integrand(model, torch.tensor([[0, 1, 2, 0]]), 0.5).total.sum()
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(value, list(params.values()), allow_unused=True)
    missing = [n for n, g in zip(params, grads, strict=True) if g is None]
    assert not missing, f"no gradient reaches {missing}"
    assert all(bool(g.isfinite().all()) for g in grads)
    for part in ("order.forward_head", "order.reverse_head", "backbone.head"):
        assert (
            sum(
                float(g.abs().sum())
                for n, g in zip(params, grads, strict=True)
                if n.startswith(part)
            )
            > 0
        )


# -- the reverse order is Plackett–Luce(ŵ) ---------------------------------------------------
def test_first_generated_position_is_plackett_luce_in_the_exponents():
    """α = 1 − t^w ⇒ from the all-mask state the first position generated is i with
    probability w^i / Σ_j w^j. The reverse process is run as the ancestral sampler runs it
    (T steps, each masked position un-masks with `unmask_probability(s, t)`); first-position
    frequencies lie within 4 SE of those probabilities (ties in one step share the credit)."""
    n, steps = 4000, 200
    w = torch.tensor([0.3, 0.7, 1.2, 2.0], dtype=torch.float64)
    schedule = PowerSchedule(w.expand(n, -1))
    gen = torch.Generator().manual_seed(0)
    masked = torch.ones(n, 4, dtype=torch.bool)
    order = torch.full((n, 4), steps)
    for step, k in enumerate(range(steps, 0, -1)):
        prob = schedule.unmask_probability((k - 1) / steps, k / steps)
        reveal = masked & (torch.rand(n, 4, generator=gen, dtype=torch.float64) < prob)
        order = torch.where(reveal, step, order)
        masked &= ~reveal
    assert not bool(masked.any())  # 1 − (0/t)^w = 1: everything is clean at t = 0
    first = order == order.min(-1, keepdim=True).values  # [N, L]
    freq = (first.double() / first.sum(-1, keepdim=True)).mean(0)
    p = w / w.sum()
    se = (p * (1 - p) / n).sqrt()
    assert bool(((freq - p).abs() < 4 * se).all()), (freq, p, se)


# -- sampling and checkpoints ----------------------------------------------------------------
def test_ancestral_sampler_uses_the_learned_reverse_schedule():
    model = tiny_model({"name": "lomdm"}, length=6)
    randomise_heads(model, scale=1.0)
    z = torch.full((2, 6), model.mask_id)
    z[:, 0] = 1
    t = torch.full((2,), 0.5)
    rs = model.reverse_schedule(z, t, model.denoise(z, t))
    torch.testing.assert_close(rs.unmask_probability(0.25, t).float(), 1 - 0.5**rs.w)
    sampler = registry.build("sampler", "ancestral", steps=8)
    fixed = torch.tensor([2, -1, -1, -1, -1, -1])
    result = sampler.sample(model, 5, 6, generator=torch.Generator().manual_seed(0), fixed=fixed)
    assert result.tokens.shape == (5, 6) and int(result.tokens.max()) < 3
    assert torch.all(result.tokens[:, 0] == 2) and torch.all(result.order[:, 0] == -1)
    assert bool(((result.order[:, 1:] >= 0) & (result.order[:, 1:] < 8)).all())


def test_save_and_load_keep_the_heads(tmp_path):
    model = tiny_model({"name": "lomdm", "K": 1, "shared_time": False}, length=4)
    randomise_heads(model, scale=1.0)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = OeMDM.from_pretrained(tmp_path / "ckpt")
    x = torch.tensor([[0, 1, 2, 1]])
    torch.testing.assert_close(loaded.forward_schedule(x).w, model.forward_schedule(x).w)
    assert loaded.order.get_options()["K"] == 1


def test_gradients_are_finite_at_the_time_edges():
    """t = 1 (all masked, log α = −inf), steps reaching s = 0, and tiny t: no NaN anywhere."""
    model = tiny_model({"name": "lomdm"}, length=5)
    randomise_heads(model, scale=1.0)
    x = torch.randint(0, 3, (6, 5), generator=torch.Generator().manual_seed(0))
    cases = [
        {"t": torch.ones(6)},
        {"t": torch.full((6,), 1e-6)},
        {"t": torch.linspace(0.05, 1.0, 6), "steps": 2},
    ]
    for kwargs in cases:
        model.zero_grad()
        terms = model.nelbo(x, generator=torch.Generator().manual_seed(1), **kwargs)
        assert bool(terms.total.isfinite().all()), kwargs
        terms.total.mean().backward()
        for name, p in model.named_parameters():
            assert p.grad is None or bool(p.grad.isfinite().all()), (name, kwargs)


# -- training times: t_min and shared times ---------------------------------------------------
@pytest.mark.statistical
def test_t_min_training_estimates_the_exact_integral_over_t_min_to_1():
    """With t_min the training draws are unbiased for ∫_{t_min}^1 of the integrand (exact
    enumeration of the 2^L masks, Gauss–Legendre in t), and measurably below the NELBO L:
    the dropped mass ∫_0^{t_min} is the bias the reference codes' clamp accepts."""
    from oemdm_core.nelbo.exact import gauss_legendre

    t_min = 0.2
    model = tiny_model({"name": "lomdm", "t_min": t_min, "scheduler": "linear"}, length=4)
    randomise_heads(model, scale=0.5)
    x = torch.tensor([[0, 1, 2, 0]])
    with torch.no_grad():
        nodes, weights = gauss_legendre(t_min, 1.0, 16)
        exact = sum(
            float(w) * float(exact_integrand(model, x, float(t)).total)
            for t, w in zip(nodes, weights, strict=True)
        )
        full = float(exact_nelbo(model, x).total)
        g = torch.Generator().manual_seed(0)
        means = torch.stack(
            [model.nelbo(x.expand(256, -1), generator=g).total.mean() for _ in range(40)]
        ).double()
    mean, se = float(means.mean()), float(means.std() / len(means) ** 0.5)
    assert abs(mean - exact) < 4 * se, (mean, exact, se)
    assert full - mean > 4 * se, (full, mean, se)


def test_shared_time_gives_the_draws_of_a_sequence_one_time():
    x = torch.tensor([[0, 1, 2, 0]]).expand(6, -1)
    for shared in (True, False):
        order = {"name": "lomdm", "K": 3, "shared_time": shared, "times": "uniform"}
        model = tiny_model(order, length=4)
        t, _ = model.estimator.training_times(
            model.order, 6, 3, torch.Generator().manual_seed(0), x.device
        )
        per_sequence = t.view(6, 3)
        assert bool((per_sequence == per_sequence[:, :1]).all()) is shared
        # low-discrepancy across the rows that have their own time
        distinct = per_sequence[:, 0] if shared else t
        gaps = distinct.sort().values.diff()
        torch.testing.assert_close(gaps, torch.full_like(gaps, 1 / len(distinct)))


def test_times_auto_follows_the_order():
    """The generic estimator's default `times: auto` takes the order's declared choice:
    importance-sampled (weighted) times for lomdm, uniform (unweighted) for mdm; an explicit
    estimator option overrides it."""
    g = torch.Generator().manual_seed(0)
    lomdm = tiny_model({"name": "lomdm"}, length=4)
    _, weight = lomdm.estimator.training_times(lomdm.order, 8, 2, g, torch.device("cpu"))
    assert weight is not None and bool((weight > 0).all())
    uniform = tiny_model({"name": "lomdm", "times": "uniform"}, length=4)
    assert uniform.estimator.training_times(uniform.order, 8, 2, g, torch.device("cpu"))[1] is None
    mdm = tiny_model("mdm", length=4)
    assert mdm.estimator.training_times(mdm.order, 8, 1, g, torch.device("cpu"))[1] is None
    forced = registry.build("estimator", "generic", times="importance")
    assert forced.training_times(mdm.order, 8, 1, g, torch.device("cpu"))[1] is not None


@pytest.mark.statistical
def test_default_importance_times_are_unbiased_for_the_nelbo():
    """Training draws with the lomdm defaults (importance-sampled t, shared by K = 2 draws)
    average to the exact NELBO (2^L masks, graded quadrature), for exponents below ½."""
    model = tiny_model({"name": "lomdm"}, length=4).double()
    x = torch.tensor([[0, 1, 2, 0]])
    with torch.no_grad():  # forward logits spread over ±4 on x: w spans most of (0.05, 1.35)
        head, features = model.order.forward_head, model.clean_features(x)
        head.weight.mul_(4.0 / head(features).squeeze(-1).std())
        head.bias.sub_(head(features).squeeze(-1).mean())
        w = model.forward_schedule(x).w
        exact = float(exact_nelbo(model, x, breakpoints=default_breakpoints(4, 20), nodes=6).total)
        g = torch.Generator().manual_seed(0)
        means = torch.stack(
            [model.nelbo(x.expand(256, -1), generator=g).total.mean() for _ in range(40)]
        )
    assert float(w.min()) < 0.5  # the regime where uniform t has infinite variance
    mean, se = float(means.mean()), float(means.std() / len(means) ** 0.5)
    assert abs(mean - exact) < 4 * se, (mean, exact, se)


def test_position_bias_moves_the_exponents_by_position_whatever_the_features():
    model = tiny_model({"name": "lomdm", "position_bias": True}, length=6)
    x = torch.randint(0, 3, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.order.forward_bias.copy_(torch.linspace(5.0, -5.0, model.backbone.max_length))
        for p in model.order.forward_head.parameters():
            p.zero_()
    w = model.order.generation_weights(x, model.schedule, model.clean_features(x)).detach()
    assert bool((w[:, 1:] < w[:, :-1]).all())  # earlier positions are generated first
    groups = model.order.parameter_groups()
    assert any(p is model.order.forward_bias for p in groups["forward_scheduler"])
    assert any(p is model.order.reverse_bias for p in groups["reverse_scheduler"])
