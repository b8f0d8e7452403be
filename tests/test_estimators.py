"""Structured NELBO estimators: teacher forcing (ar) and the vectorised block estimator.

Each must estimate the same bound as the generic Monte Carlo estimator: exactly (teacher
forcing vs the AR NLL; vectorised CE vs the generic CE at the same z_t) and in expectation
(means within 4 standard errors, fixed seeds). `estimator: auto` must pick them.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from oemdm_estimators import BlockVectorized, TeacherForcing
from oemdm_estimators.block_vectorized import two_stream_mask
from oemdm_transformer import flex

from oemdm_core import ConfigError, MonteCarloEstimator, OeMDM, registry


def build(order, estimator="auto", vocab_size=3, length=4, **backbone) -> OeMDM:
    torch.manual_seed(0)
    return OeMDM.from_config(
        {
            "vocab_size": vocab_size,
            "length": length,
            "backbone": {"name": "transformer", "preset": "tiny", **backbone},
            "order": order,
            "schedule": {"name": "linear"},
            "estimator": {"name": estimator} if isinstance(estimator, str) else estimator,
        }
    )


def ar_model(**kw) -> OeMDM:
    return build({"name": "ar"}, attention="causal", **kw)


def block_model(block_size=2, length=8, **kw) -> OeMDM:
    return build(
        {"name": "block", "block_size": block_size},
        length=length,
        attention="block_causal",
        block_size=block_size,
        **kw,
    )


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    values = values.double()
    return float(values.mean()), float(values.std() / math.sqrt(values.numel()))


def assert_same_mean(a: torch.Tensor, b: torch.Tensor) -> None:
    (ma, sa), (mb, sb) = mean_and_se(a), mean_and_se(b)
    assert abs(ma - mb) <= 4 * math.hypot(sa, sb), (ma, sa, mb, sb)


# -- selection ------------------------------------------------------------------------


def test_registered():
    assert {"generic", "teacher-forcing", "block-vectorized"} <= set(
        registry.available("estimator")
    )


@pytest.mark.parametrize(
    ("order", "backbone", "expected"),
    [
        ({"name": "ar"}, {"attention": "causal"}, "teacher-forcing"),
        ({"name": "ar"}, {"attention": "bidirectional"}, "generic"),
        ({"name": "ar"}, {"attention": "causal", "time_conditioning": True}, "generic"),
        (
            {"name": "block", "block_size": 2},
            {"attention": "block_causal", "block_size": 2},
            "block-vectorized",
        ),
        ({"name": "block", "block_size": 2}, {"attention": "bidirectional"}, "generic"),
        ({"name": "ar"}, {"attention": "block_causal", "block_size": 1}, "block-vectorized"),
        ({"name": "mdm"}, {"attention": "bidirectional"}, "generic"),
        ({"name": "mdm"}, {"attention": "causal"}, "generic"),
    ],
)
def test_auto_picks(order, backbone, expected):
    assert build(order, "auto", **backbone).estimator.name == expected


def test_order_block_structure():
    assert registry.build("order", "ar").block_structure() == 1
    assert registry.build("order", "block", block_size=3).block_structure() == 3
    assert registry.build("order", "mdm").block_structure() is None


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "backbone", "words"),
    [
        ({"name": "mdm"}, {"attention": "block_causal", "block_size": 2}, ["'mdm'"]),
        (
            {"name": "block", "block_size": 2},
            {"attention": "bidirectional"},
            ["'transformer'", "'bidirectional'", "block_causal"],
        ),
        ({"name": "mdm"}, {"attention": "bidirectional"}, ["'mdm'", "'transformer'"]),
    ],
)
def test_block_vectorized_refuses(order, backbone, words):
    with pytest.raises(ConfigError) as info:
        build(order, "block-vectorized", length=8, **backbone)
    message = str(info.value)
    assert "block-vectorized" in message
    for word in words:
        assert word in message


def test_block_vectorized_refuses_time_conditioning():
    with pytest.raises(ConfigError, match="time-conditioned"):
        block_model(time_conditioning=True, estimator="block-vectorized")


def test_teacher_forcing_refuses():
    with pytest.raises(ConfigError, match=r"teacher-forcing.*order 'block'.*needs 1"):
        build({"name": "block", "block_size": 2}, "teacher-forcing", attention="causal")
    with pytest.raises(
        ConfigError, match=r"teacher-forcing.*'bidirectional' attention; needs 'causal'"
    ):
        build({"name": "ar"}, "teacher-forcing", attention="bidirectional")


def test_constructor_refuses_unsupported_estimator():
    model = build({"name": "mdm"})
    with pytest.raises(ValueError, match="block-vectorized"):
        OeMDM(model.backbone, model.order, model.schedule, estimator=BlockVectorized())
    with pytest.raises(ValueError, match="teacher-forcing"):
        OeMDM(model.backbone, model.order, model.schedule, estimator=TeacherForcing())


@pytest.mark.parametrize("steps", [0, -1, 2.5])
def test_bad_steps(steps):
    x = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="steps"):
        ar_model().nelbo(x, steps=steps)
    with pytest.raises(ValueError, match="steps"):
        block_model(length=4).nelbo(x, steps=steps)


def test_bad_times_and_tokens():
    x = torch.zeros(2, 8, dtype=torch.long)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        block_model().nelbo(x, t=torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="token ids"):
        block_model().nelbo(x + 5)


# -- teacher forcing ----------------------------------------------------------------------


@torch.no_grad()
def test_teacher_forcing_equals_exact_ar_nll():
    """Σ_i −log p(x^i | x_<i), each factor read from the logits of a separate call whose
    input has positions ≥ i masked (the generic estimator's z_t)."""
    model = ar_model()
    x = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0]])
    exact = torch.zeros(2)
    for i in range(4):
        z = x.clone()
        z[:, i:] = model.mask_id
        logp = torch.log_softmax(model.denoise(z).logits[:, i], -1)
        exact -= logp.gather(-1, x[:, i : i + 1]).squeeze(-1)
    terms = model.nelbo(x)
    torch.testing.assert_close(terms.total, exact, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms.velocity_matching, torch.zeros(2))
    # deterministic: no generator needed, t ignored, steps a multiple of L changes nothing
    torch.testing.assert_close(model.nelbo(x, t=torch.tensor([0.1, 0.9])).total, terms.total)
    torch.testing.assert_close(model.nelbo(x, steps=8).total, terms.total)


@torch.no_grad()
def test_teacher_forcing_is_a_distribution():
    """Σ_x exp(−L(x)) = 1 over all 3^4 sequences (the bound is the exact AR likelihood)."""
    model = ar_model()
    x = torch.tensor(list(itertools.product(range(3), repeat=4)))
    assert float(torch.exp(-model.nelbo(x).total.double()).sum()) == pytest.approx(1.0, abs=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("steps", [None, 4])
def test_teacher_forcing_matches_generic_mean(steps):
    model = ar_model()
    x = torch.tensor([[0, 1, 2, 1]]).repeat(4000, 1)
    generic = MonteCarloEstimator().nelbo(
        model, x, steps=steps, generator=torch.Generator().manual_seed(1)
    )
    exact = model.nelbo(x[:1], steps=steps).total
    mean, se = mean_and_se(generic.total)
    assert abs(mean - float(exact)) <= 4 * se, (mean, se, float(exact))


@torch.no_grad()
def test_teacher_forcing_falls_back_for_other_steps():
    """T not a multiple of L: L_T differs from the AR NLL, so the generic estimator runs."""
    model = ar_model()
    x = torch.tensor([[0, 1, 2, 1]]).repeat(8, 1)
    ours = model.nelbo(x, steps=3, generator=torch.Generator().manual_seed(5))
    generic = MonteCarloEstimator().nelbo(
        model, x, steps=3, generator=torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(ours.total, generic.total)


# -- block-vectorized -----------------------------------------------------------------------


def test_two_stream_mask_layout():
    m = two_stream_mask(4, 2, torch.device("cpu"))  # blocks {0,1}, {2,3}; noisy 0..3, clean 4..7
    expected = torch.tensor(
        [
            # noisy 0..3     clean 4..7
            [1, 1, 0, 0, 0, 0, 0, 0],  # noisy block 0: itself only
            [1, 1, 0, 0, 0, 0, 0, 0],
            [0, 0, 1, 1, 1, 1, 0, 0],  # noisy block 1: itself + clean block 0
            [0, 0, 1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 1, 0, 0],  # clean block 0: clean block 0
            [0, 0, 0, 0, 1, 1, 0, 0],
            [0, 0, 0, 0, 1, 1, 1, 1],  # clean block 1: clean blocks 0, 1
            [0, 0, 0, 0, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(m, expected)
    assert two_stream_mask(4, 2, torch.device("cpu")) is m  # cached


@torch.no_grad()
def test_block_vectorized_logits_equal_generic_context():
    """The noisy stream's logits for block b equal the backbone's logits on a z whose blocks
    < b are clean, block b is the noisy block and blocks > b are masked (the generic z_t)."""
    model = block_model(block_size=2, length=8)
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, (5, 8), generator=g)
    z = torch.where(torch.rand(5, 8, generator=g) < 0.5, torch.full_like(x, model.mask_id), x)
    mask = two_stream_mask(8, 2, x.device)
    positions = torch.arange(8).repeat(2)
    joint = model.backbone(torch.cat([z, x], 1), attn_mask=mask, position_ids=positions)
    for b in range(4):
        ctx = x.clone()
        ctx[:, 2 * b : 2 * b + 2] = z[:, 2 * b : 2 * b + 2]
        ctx[:, 2 * b + 2 :] = model.mask_id
        alone = model.denoise(ctx).logits[:, 2 * b : 2 * b + 2]
        torch.testing.assert_close(joint.logits[:, 2 * b : 2 * b + 2], alone, rtol=1e-4, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize(("block_size", "steps"), [(2, None), (2, 8), (1, None), (4, None)])
def test_block_vectorized_matches_generic_mean(block_size, steps):
    model = block_model(block_size=block_size, length=8)
    x = torch.tensor([[0, 1, 2, 1, 1, 0, 2, 2]]).repeat(3000, 1)
    ours = model.nelbo(x, steps=steps, generator=torch.Generator().manual_seed(1))
    generic = MonteCarloEstimator().nelbo(
        model, x, steps=steps, generator=torch.Generator().manual_seed(2)
    )
    assert_same_mean(ours.total, generic.total)
    assert torch.all(ours.velocity_matching == 0)


@torch.no_grad()
def test_block_vectorized_falls_back_for_other_steps():
    model = block_model(block_size=2, length=8)  # 4 blocks; T = 6 is not a multiple
    x = torch.tensor([[0, 1, 2, 1, 1, 0, 2, 2]]).repeat(8, 1)
    ours = model.nelbo(x, steps=6, generator=torch.Generator().manual_seed(5))
    generic = MonteCarloEstimator().nelbo(
        model, x, steps=6, generator=torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(ours.total, generic.total)


@torch.no_grad()
def test_block_vectorized_given_times_and_seeds():
    model = block_model()
    x = torch.tensor([[0, 1, 2, 1, 1, 0, 2, 2]]).repeat(4, 1)
    a = model.nelbo(x, generator=torch.Generator().manual_seed(7))
    b = model.nelbo(x, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a.total, b.total)
    t = torch.tensor([0.2, 0.4, 0.6, 1.0])
    terms = model.nelbo(x, t=t, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(terms.t, t)
    # at t = 1 every noisy block is fully masked: all 8 positions, weight w·v = w·(1/w)·1 = 1
    assert float(terms.num_masked[3]) == 8.0


def test_block_vectorized_trains():
    model = block_model()
    x = torch.tensor([[0, 1, 2, 1, 1, 0, 2, 2]]).repeat(4, 1)
    loss = model.nelbo(x, generator=torch.Generator().manual_seed(0)).total.mean()
    loss.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


# -- flex attention (GPU path; CPU fallback and mask conversion) ---------------------------


def test_flex_falls_back_to_dense_on_cpu():
    q = torch.randn(1, 2, 8, 4)
    mask = two_stream_mask(4, 2, torch.device("cpu"))
    previous = flex.set_mode("auto")
    try:
        assert not flex.use_flex(q, mask)  # auto: silently dense on CPU
        flex.set_mode("on")
        with pytest.warns(UserWarning, match="FlexAttention requested.*CPU.*dense"):
            assert not flex.use_flex(q, mask)
        flex.set_mode("off")
        assert not flex.use_flex(q, mask)
    finally:
        flex.set_mode(previous)
    with pytest.raises(ValueError, match="auto, on, off"):
        flex.set_mode("fast")


@torch.no_grad()
def test_flex_mode_on_cpu_gives_same_nelbo():
    model = block_model()
    x = torch.tensor([[0, 1, 2, 1, 1, 0, 2, 2]]).repeat(4, 1)
    dense = model.nelbo(x, generator=torch.Generator().manual_seed(3)).total
    previous = flex.set_mode("on")
    try:
        with pytest.warns(UserWarning, match="FlexAttention requested"):
            fallback = model.nelbo(x, generator=torch.Generator().manual_seed(3)).total
    finally:
        flex.set_mode(previous)
    torch.testing.assert_close(fallback, dense)


@pytest.mark.skipif(not flex.flex_available(), reason="this torch has no FlexAttention")
@torch.no_grad()
def test_flex_block_mask_matches_dense_sdpa():
    """The dense → BlockMask conversion, run eagerly on CPU, equals SDPA with the mask."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 16, 8, generator=g) for _ in range(3))
    mask = two_stream_mask(8, 2, torch.device("cpu"))
    ours = flex.attend(q, k, v, mask, compiled=False)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
    assert flex.block_mask_from_dense(mask) is flex.block_mask_from_dense(mask)  # cached


def test_corrupt_weights_consistent_with_generic_at_block_times():
    """At the same global time, the per-block gather picks the forward schedule's values."""
    from oemdm_estimators.block_vectorized import at_block_times

    model = block_model(block_size=2, length=8)
    forward = model.order.forward_schedule(torch.zeros(1, 8, dtype=torch.long), model.schedule)
    t = torch.tensor([[0.9, 0.6, 0.3, 0.1]], dtype=torch.float64)  # one time per block
    picked = at_block_times(forward.alpha(t.reshape(-1)), 1, 4, 2)
    for b in range(4):
        row = forward.alpha(t[0, b : b + 1])
        torch.testing.assert_close(picked[0, 2 * b : 2 * b + 2], row[0, 2 * b : 2 * b + 2])


@pytest.mark.slow
@pytest.mark.skipif(not flex.flex_available(), reason="this torch has no FlexAttention")
def test_flex_traces_inside_torch_compile():
    """Inside a compiled region the BlockMask is built in the graph: no graph break."""
    mask = two_stream_mask(64, 16, torch.device("cpu"))
    q, k, v = (
        torch.randn(1, 2, 128, 16, generator=torch.Generator().manual_seed(i)) for i in range(3)
    )
    compiled = torch.compile(lambda q, k, v: flex.attend(q, k, v, mask), fullgraph=True)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(compiled(q, k, v), reference, rtol=1e-4, atol=1e-5)


# -- the benchmark script ------------------------------------------------------------------


def load_benchmark():
    """benchmarks/train_speed.py as a module (benchmarks/ is not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    if "train_speed" in sys.modules:
        return sys.modules["train_speed"]
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"
    spec = importlib.util.spec_from_file_location("train_speed", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_speed"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only machine")
def test_benchmark_refuses_cuda_without_gpu(capsys):
    with pytest.raises(SystemExit) as info:
        load_benchmark().main(["--device", "cuda"])
    assert info.value.code == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_benchmark_flop_count():
    bench = load_benchmark()
    counter = bench.FlopCounter(torch.nn.Identity(), d=8, layers=2, vocab=10)
    counter.add(batch=3, length=5, grad=True)
    n = 2 * (4 * 64 + 8 * 64) + 8 * 10  # attention + MLP per layer, plus the head
    assert counter.flops == 3 * (2 * n * 3 * 5 + 4 * 2 * 8 * 3 * 25)
    counter.handle.remove()


@pytest.mark.slow
def test_benchmark_runs_tiny(tmp_path):
    out = tmp_path / "result.json"
    code = load_benchmark().main(
        [
            "--preset",
            "tiny",
            "--quick",
            "--steps",
            "1",
            "--warmup",
            "1",
            "--matmul-size",
            "64",
            "--length",
            "16",
            "--block-size",
            "4",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    import json

    rows = json.loads(out.read_text())["results"]
    assert len(rows) == 7 and all(r["tokens_per_s"] > 0 for r in rows)


@torch.no_grad()
def test_block_vectorized_at_window_edges():
    """t = 1 puts every block at the top of its window (fully masked, velocity w⁻¹·1 for the
    linear schedule): the estimate is Σ_i CE^i of the all-masked noisy stream, for any nb
    (here 5 blocks: lo + w rounds above hi for block 2, so naive edges lose its velocity)."""
    model = build({"name": "ar"}, length=5, attention="block_causal", block_size=1)
    assert model.estimator.name == "block-vectorized"
    x = torch.tensor([[0, 1, 2, 1, 1]])
    terms = model.nelbo(x, t=torch.ones(1), generator=torch.Generator().manual_seed(0))
    z = torch.full_like(x, model.mask_id)
    out = model.backbone(
        torch.cat([z, x], 1),
        attn_mask=two_stream_mask(5, 1, x.device),
        position_ids=torch.arange(5).repeat(2),
    )
    ce = -torch.log_softmax(out.logits[:, :5], -1).gather(-1, x[..., None]).squeeze(-1)
    assert float(terms.num_masked) == 5.0
    torch.testing.assert_close(terms.total, ce.sum(-1), rtol=1e-5, atol=1e-5)


def test_importance_times_option_is_validated_and_saved(tmp_path):
    with pytest.raises(ConfigError, match=r"estimator\[generic\]\.times: got 'sobol'; expected"):
        registry.build("estimator", "generic", times="sobol")
    model = OeMDM.from_config(
        {
            "vocab_size": 3,
            "length": 4,
            "backbone": {"name": "transformer", "preset": "tiny"},
            "order": {"name": "lomdm"},
            "estimator": {"name": "generic", "times": "importance"},
        }
    )
    model.save_pretrained(tmp_path / "m")
    assert OeMDM.from_pretrained(tmp_path / "m").estimator.options.times == "importance"
    x = torch.randint(0, 3, (8, 4), generator=torch.Generator().manual_seed(0))
    terms = model.nelbo(x, generator=torch.Generator().manual_seed(0))
    assert bool((terms.t > 0).all() and (terms.t <= 1).all())
    assert float(terms.t.min()) < 0.01  # the proposal's half near t = 0 (Q⁻¹(u) ≈ (2u)^20)
    given = torch.full((8,), 0.5)  # times passed in are used as they are, unweighted
    uniform = MonteCarloEstimator().nelbo(model, x, t=given, generator=torch.Generator())
    weighted = model.nelbo(x, t=given, generator=torch.Generator())
    torch.testing.assert_close(weighted.reconstruction, uniform.reconstruction)


def test_choosing_the_generic_estimator_where_a_structured_one_serves_warns():
    import warnings

    from oemdm_core.errors import OeMDMWarning

    def build(order, attention, estimator, **backbone):
        return OeMDM.from_config(
            {
                "vocab_size": 3,
                "length": 4,
                "backbone": {"name": "transformer", "preset": "tiny", "attention": attention}
                | backbone,
                "order": order,
                "estimator": estimator,
            }
        )

    with pytest.warns(OeMDMWarning, match="'teacher-forcing' serves too") as caught:
        build("ar", "causal", "generic")
    assert "1.6x the NELBO itself" in str(caught[0].message)
    with pytest.warns(OeMDMWarning, match="'block-vectorized' serves too"):
        build({"name": "block", "block_size": 2}, "block_causal", "generic", block_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build("ar", "causal", "auto")  # auto picks the structured one
        build("mdm", "bidirectional", "generic")  # nothing structured serves mdm
        build("ar", "bidirectional", "generic")  # teacher forcing needs a causal backbone
