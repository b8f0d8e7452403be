"""Samplers: ancestral (cached), first-hitting, ar and block (KV caches)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import tiny_model
from oemdm_lomdm.power_schedule import PowerSchedule
from oemdm_samplers.first_hitting import reveal_times

from oemdm_core import ATTENTION_MODES, ConfigError, DenoiserOutput, PositionSchedule, registry
from oemdm_core.interfaces.segment import Segment, SegmentSampler
from oemdm_core.testing import check_sampler, reference_models

BLOCK2 = {"name": "block", "block_size": 2}
SAMPLERS = registry.available("sampler")
SEGMENT_SAMPLERS = [n for n in SAMPLERS if issubclass(registry.get("sampler", n), SegmentSampler)]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ar_model(**kw):
    return tiny_model("ar", vocab_size=5, length=8, attention="causal", **kw)


def block_model(attention="block_causal", **kw):
    extra = {"block_size": 2} if attention == "block_causal" else {}
    return tiny_model(BLOCK2, vocab_size=5, length=8, attention=attention, **extra, **kw)


# -- exact distributions by enumeration ----------------------------------------------------
def exact_distribution(model, groups: list[list[int]]) -> dict[tuple[int, ...], float]:
    """P(x) of the reverse process that un-masks the positions of each group in a uniformly
    random order, groups one after another, each token drawn from the denoiser at the
    current state (a backbone that ignores t)."""
    length, vocab = sum(len(g) for g in groups), model.vocab_size
    orders = [
        sum(map(list, p), []) for p in itertools.product(*map(itertools.permutations, groups))
    ]
    probs: dict[tuple[int, ...], float] = {}
    for x in itertools.product(range(vocab), repeat=length):
        total = 0.0
        for order in orders:
            z = torch.full((1, length), model.mask_id)
            p = 1.0
            for i in order:
                logp = torch.log_softmax(model.denoise(z).logits[0, i].double(), -1)
                p *= float(logp[x[i]].exp())
                z[0, i] = x[i]
            total += p
        probs[x] = total / len(orders)
    return probs


def check_frequencies(tokens: torch.Tensor, probs: dict) -> None:
    n = tokens.shape[0]
    for x, p in probs.items():
        freq = float((tokens == torch.tensor(x)).all(1).float().mean())
        se = math.sqrt(p * (1 - p) / n)
        assert abs(freq - p) <= 4 * se + 1e-9, (x, freq, p)


@torch.no_grad()
def test_first_hitting_matches_exact_mdm_distribution():
    model = tiny_model("mdm", vocab_size=2, length=3)
    probs = exact_distribution(model, [[0, 1, 2]])
    result = registry.build("sampler", "first-hitting").sample(model, 4000, generator=gen(1))
    check_frequencies(result.tokens, probs)
    assert result.nfe == 3


@torch.no_grad()
def test_block_sampler_matches_exact_block_distribution():
    model = tiny_model(BLOCK2, vocab_size=2, length=4, attention="block_causal", block_size=2)
    probs = exact_distribution(model, [[0, 1], [2, 3]])
    sampler = registry.build("sampler", "block", inner="first-hitting")
    result = sampler.sample(model, 4000, generator=gen(2))
    check_frequencies(result.tokens, probs)
    assert result.nfe == 4


@torch.no_grad()
def test_ar_sampler_matches_exact_ar_distribution():
    model = tiny_model("ar", vocab_size=2, length=3, attention="causal")
    probs = exact_distribution(model, [[0], [1], [2]])
    result = registry.build("sampler", "ar").sample(model, 4000, generator=gen(3))
    check_frequencies(result.tokens, probs)
    assert result.nfe == 3


# -- first-hitting ----------------------------------------------------------------------
def test_reveal_times_invert_the_schedule():
    """Linear mdm: R = u; cosine mdm: 1 − cos(πR/2) = u; ar: R_i = (L−1−i + u)/L."""
    u = torch.rand(3, 4, generator=gen(), dtype=torch.float64)
    x = torch.zeros(1, 4, dtype=torch.long)
    linear = tiny_model("mdm", length=4).forward_schedule(x)
    torch.testing.assert_close(reveal_times(linear, u, 1.0, 0.0), u, atol=1e-12, rtol=0)
    cosine = tiny_model("mdm", schedule="cosine", length=4).forward_schedule(x)
    expected = torch.arccos(1 - u) * 2 / math.pi
    torch.testing.assert_close(reveal_times(cosine, u, 1.0, 0.0), expected, atol=1e-9, rtol=0)
    ar = tiny_model("ar", length=4).forward_schedule(x)
    expected = (3 - torch.arange(4, dtype=torch.float64) + u) / 4
    torch.testing.assert_close(reveal_times(ar, u, 1.0, 0.0), expected, atol=1e-12, rtol=0)
    # Conditioned on being masked at t_start = 0.5 (linear): R = 0.5·u.
    torch.testing.assert_close(reveal_times(linear, u, 0.5, 0.0), 0.5 * u, atol=1e-12, rtol=0)

    class Opaque(PositionSchedule):  # not a WindowedSchedule: the generic inversion
        def __init__(self, inner):
            self.inner = inner

        def alpha(self, t):
            return self.inner.alpha(t)

        def velocity(self, t):
            return self.inner.velocity(t)

    for schedule in (cosine, ar):
        fast = reveal_times(schedule, u, 0.8, 0.1)
        torch.testing.assert_close(reveal_times(Opaque(schedule), u, 0.8, 0.1), fast)


@pytest.mark.parametrize("order", ["mdm", BLOCK2, "ar", {"name": "lomdm"}])
def test_first_hitting_one_call_per_generated_position(order):
    model = tiny_model(order, vocab_size=5, length=8)
    result = registry.build("sampler", "first-hitting").sample(model, 3, generator=gen())
    assert result.nfe == 8
    assert (result.tokens < 5).all()
    assert (result.order.sort(1).values == torch.arange(8)).all()  # one position per event
    if order == "ar":
        assert (result.order == torch.arange(8)).all()
    if order == BLOCK2:
        assert (result.order // 2 == torch.arange(8) // 2).all()  # blocks left to right
    fixed = torch.tensor([1, 2, -1, -1, 3, -1, -1, -1])
    result = registry.build("sampler", "first-hitting").sample(
        model, 3, generator=gen(), fixed=fixed
    )
    assert result.nfe == 5
    assert (result.tokens[:, [0, 1, 4]] == torch.tensor([1, 2, 3])).all()
    assert (result.order[:, [0, 1, 4]] == -1).all()


def test_first_hitting_time_conditioned_fixed_order_calls_at_event_times():
    model = tiny_model("mdm", vocab_size=5, length=6, time_conditioning=True)
    seen = []
    denoise = model.denoise
    model.denoise = lambda z, t: (seen.append(t.clone()), denoise(z, t))[1]
    result = registry.build("sampler", "first-hitting").sample(model, 2, generator=gen())
    assert result.nfe == 7  # one call per event, plus the first call that reads the schedule
    times = torch.stack(seen[1:])  # [6, N], event times decrease
    assert (times[1:] <= times[:-1]).all() and (times < 1).all() and (times > 0).all()


class ConstantDenoiser:
    def __init__(self, n: int, vocab: int) -> None:
        self.logits = torch.zeros(1, n, vocab)

    def __call__(self, z, t):
        return DenoiserOutput(logits=self.logits.expand(z.shape[0], -1, -1))


def test_first_hitting_power_law_first_event_is_plackett_luce():
    """State-dependent path: first position ~ w/Σw, first time τ = U^{1/Σw} (mean Σw/(Σw+1))."""
    w = torch.tensor([0.5, 1.0, 2.5], dtype=torch.float64)
    n, rows = 3, 6000
    segment = Segment(
        tokens=torch.full((rows, n), 4),
        mask_id=4,
        denoise=ConstantDenoiser(n, 4),
        schedule=lambda z, t, out: PowerSchedule(w.expand(z.shape[0], -1)),
        uses_time=False,
    )
    times = []
    original = segment.denoise
    segment.denoise = lambda z, t: (times.append(t.double()), original(z, t))[1]
    result = registry.build("sampler", "first-hitting").fill_segment(segment, gen(4))
    assert result.nfe == n
    first = (result.order == 0).double().mean(0)
    p = w / w.sum()
    assert ((first - p).abs() <= 4 * (p * (1 - p) / rows).sqrt()).all()
    tau = times[1]  # the call after the first event is made at its time
    mean, var = 4.0 / 5.0, 4.0 / (6.0 * 25.0)  # Beta(Σw, 1) with Σw = 4
    assert abs(float(tau.mean()) - mean) <= 4 * math.sqrt(var / rows)


def test_first_hitting_refuses_unsupported_state_dependent_schedules():
    class Wrong(PowerSchedule):
        def velocity(self, t):  # hazard not of the form w/t
            return torch.ones_like(self.w)

    segment = Segment(
        tokens=torch.full((2, 3), 4),
        mask_id=4,
        denoise=ConstantDenoiser(3, 4),
        schedule=lambda z, t, out: Wrong(torch.ones(2, 3)),
        uses_time=False,
    )
    with pytest.raises(ValueError, match="power-law"):
        registry.build("sampler", "first-hitting").fill_segment(segment)
    segment.schedule = lambda z, t, out: PowerSchedule(torch.ones(2, 3))
    segment.uses_time = True
    with pytest.raises(ValueError, match="time-conditioned"):
        registry.build("sampler", "first-hitting").fill_segment(segment)


# -- ancestral -------------------------------------------------------------------------
def test_cached_ancestral_one_call_per_distinct_state():
    model = tiny_model("mdm", vocab_size=5, length=8)
    cached = registry.build("sampler", "ancestral", steps=1000).sample(model, 2, generator=gen())
    plain = registry.build("sampler", "ancestral", steps=1000, cache=False)
    uncached = plain.sample(model, 2, generator=gen())
    assert torch.equal(cached.tokens, uncached.tokens)
    assert torch.equal(cached.order, uncached.order)
    # Batch states: the initial one, then one per step where some position changed; the
    # final state needs no call.
    changes = len(torch.unique(cached.order))
    assert cached.nfe <= changes <= 2 * 8
    assert uncached.nfe > 100


# -- ar --------------------------------------------------------------------------------
def test_ar_passes_the_kit_on_the_transformer_cache():
    """The kit's reference backbone recomputes; the transformer's real KV cache too."""
    models = [("transformer causal", ar_model()), ("time", ar_model(time_conditioning=True))]
    check_sampler(registry.build("sampler", "ar"), models=models)


def test_ar_one_call_per_generated_position_in_order():
    model = ar_model()
    fixed = torch.tensor([3, 1, -1, -1, 2, -1, -1, -1])
    result = registry.build("sampler", "ar").sample(model, 4, generator=gen(), fixed=fixed)
    assert result.nfe == 5
    assert (result.order[:, [2, 3, 5, 6, 7]] == torch.arange(5)).all()


def test_ar_temperature_zero_and_tiny_top_p_are_greedy():
    model = ar_model()
    greedy = registry.build("sampler", "ar", temperature=0).sample(model, 2, generator=gen(1))
    nucleus = registry.build("sampler", "ar", top_p=1e-9).sample(model, 2, generator=gen(2))
    assert torch.equal(greedy.tokens, nucleus.tokens)
    assert torch.equal(greedy.tokens[0], greedy.tokens[1])


def test_ar_sampler_errors_name_order_and_backbone():
    with pytest.raises(ValueError, match="'bidirectional'.*causal"):
        registry.build("sampler", "ar").sample(tiny_model("ar", length=4), 1)
    with pytest.raises(ValueError, match="order 'mdm'"):
        registry.build("sampler", "ar").sample(tiny_model("mdm", length=4, attention="causal"), 1)


# -- block -----------------------------------------------------------------------------
@pytest.mark.parametrize("inner", SEGMENT_SAMPLERS)
def test_block_passes_the_kit_with_every_inner_rule_on_the_transformer_cache(inner):
    """Cached (causal, block-causal) and uncached (bidirectional) blocks on the transformer,
    whose KV cache the kit's reference backbone does not exercise."""
    models = [(attention, block_model(attention)) for attention in ATTENTION_MODES]
    check_sampler(registry.build("sampler", "block", inner=inner, steps=3), models=models)


def test_block_first_hitting_one_call_per_generated_position():
    sampler = registry.build("sampler", "block", inner="first-hitting")
    result = sampler.sample(block_model(), 3, generator=gen(), fixed=torch.tensor([1, 2, 3, -1]))
    assert result.nfe == 5
    assert (result.order[:, :3] == -1).all() and (result.order[:, 3:] >= 0).all()


def test_block_sampler_uncached_bidirectional():
    model = block_model("bidirectional")
    result = registry.build("sampler", "block", cache=False).sample(model, 2, generator=gen())
    assert (result.tokens < 5).all()
    assert (result.order[:, 2:4].min(1).values > result.order[:, :2].max(1).values).all()


def test_block_sampler_stops_at_end_of_text():
    model = block_model()
    greedy = registry.build("sampler", "block", temperature=0, steps=2)
    full = greedy.sample(model, 2)
    eos = int(full.tokens[0, 0])  # greedy: the first token is the same in every run
    stopped = registry.build("sampler", "block", temperature=0, steps=2, eos_id=eos).sample(
        model, 2
    )
    assert (stopped.lengths <= 2).all()
    for row, n in zip(stopped.tokens, stopped.lengths.tolist(), strict=True):
        assert int(row[n - 1]) == eos and (row[n:] == eos).all()
        assert not (row[: n - 1] == eos).any()
    assert stopped.nfe < full.nfe
    assert (stopped.order[:, 2:] == -1).all()
    assert (full.lengths == 8).all()


def test_block_sampler_errors():
    with pytest.raises(ValueError, match="multiple of the block size"):
        registry.build("sampler", "block").sample(block_model(), 1, length=7)
    with pytest.raises(ValueError, match="'bidirectional'.*cache=False"):
        registry.build("sampler", "block").sample(block_model("bidirectional"), 1)
    with pytest.raises(ValueError, match="order 'mdm'"):
        registry.build("sampler", "block").sample(tiny_model("mdm", length=4), 1)
    with pytest.raises(ValueError, match="no SegmentSampler"):
        registry.build("sampler", "block", inner="ar")


# -- common validation -----------------------------------------------------------------
@pytest.mark.parametrize("name", SAMPLERS)
def test_option_validation(name):
    cls = registry.get("sampler", name)
    fields = cls.Options.model_fields
    if "top_p" in fields:
        for bad in (0.0, 1.5):
            with pytest.raises(ConfigError, match="top_p"):
                registry.build("sampler", name, top_p=bad)
    if "steps" in fields:
        with pytest.raises(ConfigError, match="steps"):
            registry.build("sampler", name, steps=0)
    with pytest.raises(ConfigError, match="no_such_option"):
        registry.build("sampler", name, no_such_option=1)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_rejects_a_fixed_longer_than_the_sample(name):
    sampler = registry.build("sampler", name)
    model = next(m for _, m in reference_models() if accepts(sampler, m))
    with pytest.raises(ValueError, match="longer than the sample length"):
        sampler.sample(model, 1, length=4, fixed=torch.zeros(6, dtype=torch.long))


def accepts(sampler, model) -> bool:
    try:
        sampler.check_model(model, 4)
    except ValueError:
        return False
    return True


def test_a_built_inner_rule_round_trips_through_the_block_options():
    from oemdm_samplers import AncestralSampler, BlockSampler

    block = BlockSampler(inner=AncestralSampler(steps=3, temperature=0.5))
    assert block.get_options()["steps"] == 3 and block.get_options()["temperature"] == 0.5
    rebuilt = registry.build("sampler", "block", **block.get_options())
    assert rebuilt.rule.get_options() == block.rule.get_options()
    with pytest.raises(ValueError, match="steps is an option of the inner rule you built"):
        BlockSampler(inner=AncestralSampler(steps=3), steps=2)
