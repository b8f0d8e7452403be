"""Every check of the conformance kits fails, naming the component and the property, on a
component built to break exactly that property (so no check is vacuous); the same
components without a defect pass."""

from __future__ import annotations

import pytest
import torch
from pydantic import Field

from oemdm_core import (
    BaseSchedule,
    DenoiserOutput,
    Order,
    Sampler,
    SampleResult,
    Scorer,
    WindowedSchedule,
    block_windows,
    registry,
)
from oemdm_core.interfaces.draws import gumbel_noise, sample_tokens
from oemdm_core.interfaces.sampler import initial_state
from oemdm_core.interfaces.segment import StepInfo
from oemdm_core.plugin.component import Options
from oemdm_core.testing import (
    ConformanceError,
    ReferenceBackbone,
    check_backbone,
    check_order,
    check_position_schedule,
    check_sampler,
    check_schedule,
    check_scorer,
    reference_models,
)


# -- schedules -----------------------------------------------------------------------------------
class Broken(BaseSchedule):
    """A linear schedule with one defect chosen by `defect`."""

    name = "broken"

    def __init__(self, defect: str) -> None:
        self.defect = defect

    def alpha(self, s):
        if self.defect == "end":
            return 1.0 - 0.9 * s
        if self.defect == "bump":
            return torch.where((s > 0.4) & (s < 0.6), torch.full_like(s, 0.7), 1.0 - s)
        if self.defect == "nan":
            return torch.where(s == 1.0, torch.nan, 1.0 - s)
        if self.defect == "batch_dependent" and s.numel() == 1:
            return 0.999 * (1.0 - s)  # a different answer when asked one time at a time
        return 1.0 - s

    def dalpha(self, s):
        return torch.full_like(s, -2.0 if self.defect == "velocity" else -1.0)


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("end", "alpha(1) = 0"),
        ("bump", "non-increasing"),
        ("nan", "alpha is finite"),
        ("velocity", "hazard identity"),
        ("batch_dependent", "answers any t"),
    ],
)
def test_check_schedule_names_the_failing_property(defect, message):
    with pytest.raises(ConformanceError, match="schedule 'broken'") as info:
        check_schedule(Broken(defect))
    assert message in str(info.value)
    assert "fails at" in str(info.value) or "raised" in str(info.value)


# -- orders --------------------------------------------------------------------------------------
class NegativeVelocity(WindowedSchedule):
    def velocity(self, t):
        return -super().velocity(t)


class LateWindows(Order):
    """Block windows, but broken in a way chosen by `defect`."""

    name = "late"

    def __init__(self, defect: str) -> None:
        super().__init__()
        self.defect = defect

    def forward_schedule(self, x, base, features=None):
        lo, hi = block_windows(x.shape[1], 2)
        if self.defect == "velocity":
            return NegativeVelocity(base, lo, hi)
        if self.defect == "not_masked_at_1":
            return WindowedSchedule(base, lo, hi + 0.5)  # still partly clean at t = 1
        raise RuntimeError("cannot build a schedule")


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("velocity", "velocity in [0.0, inf]"),
        ("not_masked_at_1", "alpha(1) = 0"),
        ("raises", "forward_schedule(x) raised RuntimeError"),
    ],
)
def test_check_order_names_the_failing_property(defect, message):
    base = registry.build("schedule", "linear")
    with pytest.raises(ConformanceError, match="order 'late'") as info:
        check_order(LateWindows(defect), base)
    assert message in str(info.value)
    with pytest.raises(ConformanceError, match="order 'late'"):
        check_order(LateWindows(defect))  # on the kit's own linear base


def test_check_position_schedule_reports_time_and_position():
    base = registry.build("schedule", "linear")
    lo, hi = block_windows(4, 2)
    with pytest.raises(ConformanceError, match=r"t=.*index") as info:
        check_position_schedule(NegativeVelocity(base, lo, hi), 4, who="custom")
    assert str(info.value).startswith("custom: velocity")


# -- samplers ------------------------------------------------------------------------------------
class LeftToRight(Sampler):
    """Un-masks positions left to right, one denoiser call each; `defect` breaks one
    property of the sampler contract."""

    name = "left-to-right"
    has_cache = True
    reports_steps = True

    class Options(Options):
        cache: bool = Field(default=True, description="A cache that changes nothing.")
        defect: str = Field(default="none", description="The property to break.")

    def __init__(self, **options) -> None:
        self.options = self.validate_options(**options)

    def check_model(self, model, length=None):
        defect = self.options.defect
        if defect == "serves_nothing" or (defect == "needs_cache" and not self.options.cache):
            raise ValueError("sampler 'left-to-right' cannot serve this model")
        if defect == "check_model_type_error":
            raise TypeError("not a ValueError")

    @torch.no_grad()
    def sample(self, model, num_samples, length=None, generator=None, fixed=None, callback=None):
        defect, length = self.options.defect, model.length if length is None else length
        z, keep = initial_state(model, num_samples, length, fixed)
        order, nfe = torch.full_like(z, -1), 0
        for i in range(length):
            if bool(keep[:, i].all()):
                continue
            logits = model.denoise(z, torch.full((num_samples,), 1 - i / length)).logits[:, i]
            token = sample_tokens(logits, None if defect == "global_rng" else generator)
            z[:, i] = torch.where(keep[:, i], z[:, i], token)
            order[:, i] = torch.where(keep[:, i], -1, nfe)
            if callback is not None and defect != "silent_callback":
                t = torch.full((num_samples,), 1 - i / length)
                revealed = torch.zeros_like(keep)
                revealed[:, i] = ~keep[:, i] if defect != "reveals_a_step_late" or i == 0 else False
                if defect == "reveals_a_step_late" and i > 0:
                    revealed[:, i - 1] = ~keep[:, i - 1]
                state = (
                    z.clone() if defect != "state_with_mask" else torch.full_like(z, model.mask_id)
                )
                callback(StepInfo(nfe + (defect == "step_index"), t, t, state, revealed))
            if callback is not None and defect == "callback_changes_samples":
                z[:, i] = torch.where(keep[:, i], z[:, i], (z[:, i] + 1) % model.vocab_size)
            nfe += 1
        if defect == "token_range":
            z[0, -1] = model.vocab_size
        if defect == "order_dtype":
            order = order.int()
        if defect == "order_at_fixed":
            order = order.clamp_min(0)
        if defect == "negative_order":
            order = torch.where(keep, order, order - 1)
        if defect == "zero_order":
            order = torch.where(keep, order, 0)
        if defect == "overwrites_fixed":
            z = torch.where(keep, (z + 1) % model.vocab_size, z)
        if defect == "cache_changes_samples" and self.options.cache:
            z = torch.where(keep, z, (z + 1) % model.vocab_size)
        if defect == "returns_a_tuple":
            return z, order
        lengths = None
        if defect == "lengths":
            lengths = torch.full((num_samples,), length + 1)
        return SampleResult(
            tokens=z, order=order, nfe=0 if defect == "nfe" else nfe, lengths=lengths
        )


def test_the_broken_sampler_without_a_defect_passes():
    check_sampler(LeftToRight())
    check_sampler(LeftToRight, models=reference_models(configs=[("mdm", "causal", False)]))


def test_cache_equality_is_only_asked_of_backbones_that_ignore_t():
    timed = reference_models(configs=[("mdm", "causal", True)])
    with pytest.raises(ConformanceError, match="no model whose backbone ignores t"):
        check_sampler(LeftToRight, models=timed)


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("token_range", "tokens in [0, 3) fails"),
        ("order_dtype", "order is a [N, L] long tensor"),
        ("order_at_fixed", "(fixed by the caller or padding) has order 0"),
        ("negative_order", "(generated) has order -1"),
        ("nfe", "nfe is an int >= 1"),
        ("lengths", "lengths in [0, 8]"),
        ("overwrites_fixed", "fixed positions are kept"),
        ("global_rng", "seeded determinism"),
        ("cache_changes_samples", "cache=True gives the samples of cache=False"),
        ("needs_cache", "served both with cache=True and cache=False"),
        ("serves_nothing", "serves a reference model fails"),
        ("check_model_type_error", "check_model raises ValueError or accepts"),
        ("returns_a_tuple", "sample returns a SampleResult"),
        ("zero_order", "order numbers the steps (not all 0 after several denoiser calls)"),
        ("silent_callback", "reports_steps: revealed at the step order gives"),
        ("step_index", "reports_steps: StepInfos of steps 0, 1, …"),
        ("reveals_a_step_late", "reports_steps: revealed at the step order gives"),
        ("state_with_mask", "reports_steps: revealed positions hold a token"),
        ("callback_changes_samples", "reports_steps: a callback changes nothing"),
    ],
)
def test_check_sampler_names_the_failing_property(defect, message):
    with pytest.raises(ConformanceError, match="sampler 'left-to-right'") as info:
        check_sampler(LeftToRight(defect=defect))
    assert message in str(info.value)


class NoCacheOption(LeftToRight):
    """Declares has_cache but has no `cache` option."""

    class Options(Options):
        defect: str = Field(default="none", description="The property to break.")


def test_check_sampler_needs_the_cache_option_has_cache_declares():
    with pytest.raises(ConformanceError, match="has_cache: a boolean option 'cache'"):
        check_sampler(NoCacheOption())


# -- backbones -----------------------------------------------------------------------------------
class BrokenBackbone(ReferenceBackbone):
    """The reference backbone with one defect, chosen by `defect`."""

    name = "broken-backbone"

    def __init__(self, defect: str, **options) -> None:
        super().__init__(**options)
        self.defect = defect

    def own_mask(self, n):
        if self.defect == "leaks":  # attends to every position whatever it declares
            return torch.ones(n, n, dtype=torch.bool)
        return super().own_mask(n)

    def forward(self, tokens, t=None, **kw):
        if self.defect == "rejects_mask" and bool((tokens == self.vocab_size).any()):
            raise IndexError("id out of range")
        if self.defect == "ignores_mask":
            kw.pop("attn_mask", None)
        if self.defect == "ignores_positions":
            kw.pop("position_ids", None)
        out = super().forward(tokens, t, **kw)
        logits, hidden = out.logits, out.hidden
        defect = self.defect
        if defect == "logits_shape":
            logits = logits[..., :-1]
        if defect == "nan":
            logits = torch.where(tokens[..., None] == self.vocab_size, torch.nan, logits)
        if defect == "hidden_missing":
            hidden = None
        if defect == "hidden_present":
            hidden = torch.zeros(*tokens.shape, 8)
        if defect == "time" and t is not None:
            logits = logits + t[:, None, None]
        if defect == "rows":
            logits = logits + logits.mean(0, keepdim=True)
        if defect == "noise":
            logits = logits + 1e-3 * torch.rand_like(logits)
        if defect == "cache" and kw.get("cache") is not None:
            logits = logits + 1e-2
        return DenoiserOutput(logits=logits, hidden=hidden)

    def _cached(self, tokens, t, cache, commit):
        if self.defect == "commits_everything":
            commit = None
        out = super()._cached(tokens, t, cache, commit)
        if self.defect == "stale_last_token":
            cache.set_last_token = lambda tokens: None
        return out


CAUSAL = {"attention": "causal"}
BLOCK = {"attention": "block_causal", "block_size": 2}


@pytest.mark.parametrize(
    ("defect", "options", "message"),
    [
        ("logits_shape", {}, "logits have shape [B, L, V]"),
        ("nan", {}, "logits are finite"),
        ("rejects_mask", {}, "forward(tokens, t) raised IndexError"),
        ("hidden_missing", {}, "exposes_hidden: hidden has shape"),
        ("hidden_present", {"exposes_hidden": False}, "exposes_hidden False: hidden is None"),
        ("noise", {}, "a second call gives the same logits"),
        ("rows", {}, "rows are independent"),
        ("leaks", CAUSAL, "causal: logits at i do not read tokens ≥ i"),
        ("leaks", BLOCK, "block_causal: logits do not read later blocks"),
        ("time", {}, "uses_time False: the output does not depend on t"),
        ("cache", CAUSAL, "cached logits equal the uncached ones"),
        ("cache", BLOCK, "cached logits equal the uncached ones"),
        ("commits_everything", BLOCK, "commit=k appends k positions"),
        ("stale_last_token", CAUSAL, "one call per token with set_last_token"),
        ("ignores_mask", {}, "two streams [x ; y], first half"),
        ("ignores_mask", BLOCK, "two streams [x ; y]"),
        ("ignores_positions", {}, "two streams [x ; y], second half"),
    ],
)
def test_check_backbone_names_the_failing_property(defect, options, message):
    with pytest.raises(ConformanceError, match="backbone 'broken-backbone'") as info:
        check_backbone(BrokenBackbone(defect, **options))
    assert message in str(info.value)


def test_check_backbone_reads_the_declared_attention_and_block_size():
    backbone = BrokenBackbone("none")
    backbone.attention = "sideways"
    with pytest.raises(ConformanceError, match="attention is one of"):
        check_backbone(backbone)
    backbone = BrokenBackbone("none", **BLOCK)
    backbone.block_size = None
    with pytest.raises(ConformanceError, match="block_causal declares an int block_size"):
        check_backbone(backbone)


def test_check_backbone_reads_the_declared_shard_units():
    backbone = BrokenBackbone("none")
    stray = torch.nn.Linear(2, 2)  # not a part of the backbone: FSDP could not shard it
    backbone.shard_units = lambda: [stray]
    with pytest.raises(ConformanceError, match="shard_units.*Linear is not one"):
        check_backbone(backbone)
    backbone.part = torch.nn.Linear(2, 2)  # a submodule, but listed twice
    backbone.shard_units = lambda: [backbone.part, backbone.part]
    with pytest.raises(ConformanceError, match="a unit is listed twice"):
        check_backbone(backbone)


# -- rebuilt from options (every kit) -------------------------------------------------------------
class PowerOutsideOptions(BaseSchedule):
    """α(s) = 1 − s^p with p taken outside `Options`: a checkpoint rebuilds it with p = 2."""

    name = "power-outside-options"

    def __init__(self, p: float = 2.0, **options) -> None:
        super().__init__(**options)
        self.p = p

    def alpha(self, s):
        return 1.0 - s**self.p

    def dalpha(self, s):
        return -self.p * s ** (self.p - 1)


def test_check_schedule_rebuilds_from_the_options():
    check_schedule(PowerOutsideOptions())
    with pytest.raises(ConformanceError, match="rebuilt from get_options\\(\\), the same alpha"):
        check_schedule(PowerOutsideOptions(p=3.0))


def test_check_backbone_rebuilds_from_the_options():
    check_backbone(ReferenceBackbone(max_length=12))
    backbone = ReferenceBackbone()
    backbone.max_length = 12  # set outside the options: a checkpoint would rebuild 16
    with pytest.raises(
        ConformanceError, match="the same declarations fails at declared max_length"
    ):
        check_backbone(backbone)


class Sized(Order):
    """Block windows of `block_size`; `defect` breaks one thing."""

    name = "sized"

    class Options(Options):
        block_size: int = Field(default=2, ge=1, description="Positions per block.")
        defect: str = Field(default="none", description="The property to break.")

    def forward_schedule(self, x, base, features=None):
        if self.options.defect == "cosine" and base.name == "cosine":
            raise RuntimeError("cannot use this base schedule")
        lo, hi = block_windows(x.shape[1], self.options.block_size)
        return WindowedSchedule(base, lo, hi)

    def get_options(self):
        extra = {"unknown": 1} if self.options.defect == "options" else {}
        return {**super().get_options(), **extra}


def test_check_order_with_a_registry_runs_every_base_schedule():
    check_order(Sized(), registry=registry)
    with pytest.raises(ConformanceError, match="order 'sized'") as info:
        check_order(Sized(defect="cosine"), registry=registry)
    assert str(info.value).endswith("(base schedule 'cosine')")
    check_order(Sized(defect="cosine"))  # on the kit's own linear base
    with pytest.raises(ConformanceError, match="rebuilt from get_options\\(\\) raised ConfigError"):
        check_order(Sized(defect="options"), registry=registry)
    with pytest.raises(ConformanceError, match="rebuilt from get_options\\(\\) raised ConfigError"):
        check_order(Sized(defect="options"))


class Shifted(LeftToRight):
    """Shifts the generated tokens by an amount taken outside `Options` (a checkpoint
    rebuilds shift 0)."""

    has_cache = reports_steps = False  # the rebuild is what is checked

    def __init__(self, shift: int = 0, **options) -> None:
        super().__init__(**options)
        self.shift = shift

    def sample(self, model, num_samples, length=None, generator=None, fixed=None, callback=None):
        result = super().sample(model, num_samples, length, generator, fixed, callback)
        moved = (result.tokens + self.shift) % model.vocab_size
        result.tokens = torch.where(result.order >= 0, moved, result.tokens)
        return result


def test_check_sampler_rebuilds_from_the_options():
    check_sampler(Shifted(), models=reference_models(configs=[("mdm", "causal", False)]))
    with pytest.raises(ConformanceError, match="rebuilt from get_options\\(\\), the same samples"):
        check_sampler(Shifted(shift=1), models=reference_models(configs=[("mdm", "causal", False)]))


# -- scorers -------------------------------------------------------------------------------------
class NoisyConfidence(Scorer):
    """Confidence plus Gumbel noise from the generator; `defect` breaks one property."""

    name = "noisy-confidence"

    class Options(Options):
        defect: str = Field(default="none", description="The property to break.")

    def score(self, logits, velocity, generator=None):
        defect = self.options.defect
        scores = torch.softmax(logits.double(), -1).amax(-1)
        if not type(self).deterministic:
            scores = scores + gumbel_noise(tuple(logits.shape[:2]), generator, logits.device)
        if defect == "reads_generator":
            scores = scores + gumbel_noise(tuple(logits.shape[:2]), generator, logits.device)
        if defect == "global_rng":
            scores = scores + torch.rand(scores.shape, dtype=torch.float64)
        if defect == "needs_velocity":
            scores = scores + velocity.log()
        if defect == "nan":
            scores[:, 0] = torch.nan
        if defect == "plus_inf":
            scores[0, -1] = torch.inf
        if defect == "batch_mean":
            scores = scores - scores.mean(0)
        if defect == "shape":
            return scores[..., None]
        if defect == "integers":
            return (100 * scores).long()
        if defect == "a_list":
            return scores.tolist()
        return scores


class Confident(NoisyConfidence):
    """The same rule without noise, declared deterministic."""

    name = "confident"
    deterministic = True


class Scaled(Confident):
    """Confidence times a scale taken outside `Options` (a checkpoint rebuilds scale 1)."""

    name = "scaled"

    def __init__(self, scale: float = 1.0, **options) -> None:
        super().__init__(**options)
        self.scale = scale

    def score(self, logits, velocity, generator=None):
        return self.scale * super().score(logits, velocity, generator)


def test_the_broken_scorers_without_a_defect_pass():
    for scorer in (NoisyConfidence(), Confident(), Scaled()):
        check_scorer(scorer)


@pytest.mark.parametrize(
    ("cls", "defect", "message"),
    [
        (NoisyConfidence, "shape", "scores are a floating [N, L] tensor fails"),
        (NoisyConfidence, "integers", "scores are a floating [N, L] tensor fails"),
        (NoisyConfidence, "a_list", "score returns a tensor"),
        (NoisyConfidence, "nan", "scores have no NaN or +inf fails"),
        (NoisyConfidence, "plus_inf", "scores have no NaN or +inf fails"),
        (NoisyConfidence, "needs_velocity", "(velocity None) raised AttributeError"),
        (NoisyConfidence, "global_rng", "seeded determinism"),
        (Confident, "reads_generator", "deterministic: scores do not depend on the generator"),
        (Confident, "batch_mean", "deterministic: a row alone scores as in the batch"),
    ],
)
def test_check_scorer_names_the_failing_property(cls, defect, message):
    with pytest.raises(ConformanceError, match=f"scorer '{cls.name}'") as info:
        check_scorer(cls(defect=defect))
    assert message in str(info.value)


def test_check_scorer_rebuilds_from_the_options():
    with pytest.raises(ConformanceError, match="rebuilt from get_options\\(\\), the same scores"):
        check_scorer(Scaled(scale=2.0))


def test_check_scorer_reads_the_declaration():
    class Vague(Confident):
        deterministic = 1

    with pytest.raises(ConformanceError, match="deterministic is a bool"):
        check_scorer(Vague())
