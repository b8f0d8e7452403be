"""ReMDM remasking (Wang, Schiff, Sahoo & Kuleshov, arXiv 2503.00307) for any order.

The ancestral step keeps un-masked tokens forever. ReMDM's posterior also lets a decoded
token return to the mask, with probability σ_t, and un-masks masked positions a little more
to keep the marginals of the forward process. Per position i, with the reverse schedule
α^i = α_R^i(z_t, ·) of the current state (a scalar schedule in the paper; here any order's
per-position schedule, so learned orders keep their learned reverse velocities):

    decoded  z_t^i = y:  z_s^i = m with probability σ^i, else stays y
    masked   z_t^i = m:  un-masked with probability (α_s^i − (1 − σ^i)·α_t^i) / (1 − α_t^i)
                         = a_R^i + σ^i·α_t^i / (1 − α_t^i), then y ~ p_θ(· | z_t)_i

Both are probabilities iff 0 ≤ σ^i ≤ σ_max^i = min(1, (1 − α_s^i) / α_t^i) (σ_max = 0 where
α_t^i = 0: no decoded token can sit there). Strategies (the paper's §4.1):

- `cap`:        σ^i = min(η, σ_max^i)                  (ReMDM "max-capped", η = η_cap)
- `rescale`:    σ^i = η · σ_max^i                      (ReMDM "max-rescale", η = η_rescale)
- `confidence`: σ^i = softmax_j(−ψ^j)_i · η·σ_max^i over the decoded positions, ψ^j the
                model's probability of token j when it was last drawn (ReMDM-conf, as the
                ReMDM project page defines it: masked positions have ψ = ∞, weight 0; the
                base σ_t here is `rescale`'s, η = 1 gives σ_max). The weights sum to 1, so
                about σ_t tokens per sequence are re-masked per step. `conf_scale="count"`
                multiplies by the number n of decoded tokens (clipped at σ_max): the `rescale`
                budget of n·σ_t re-maskings, redistributed towards the least confident tokens
                (our variant). Masked positions un-mask with the base σ_t in both; how the
                original code treats them there was not checked.
- `loop`:       ReMDM-loop, on the sampler's time τ = k/T: for τ in [t_on, 1] the model's
                time runs from 1 down to t_loop (default t_loop = t_on: τ itself), for τ in
                [t_off, t_on) it stays at t_loop (α frozen: a_R = 0, and σ^i = min(η, σ_max^i)
                with σ_max^i = (1 − α^i)/α^i re-masks and un-masks at one masking level),
                below t_off it runs from t_loop down to 0. Needs 0 < t_off < t_on < 1. The
                original runs use t_on = 0.55, t_off = 0.05, η = 0.02 and α = 0.9 in the
                loop: t_loop = 0.1 with the linear schedule.

Remasking is active while t_off < τ ≤ t_on (for the first three strategies τ = t on the
uniform grid; with t_on < 1 it is ReMDM-"switch"); the last step (s = 0, σ_max = 0) un-masks
everything. `grid: equal-reveal` (not with `loop`) ends each step where the reverse schedule
expects n/k of the n masked positions to un-mask (`oemdm_core.interfaces.grids`); τ = k/T is
then the fraction of steps still to run.
Positions given by the caller are never re-masked.
With η = 0 every step is exactly the ancestral sampler's: the same uniform draw decides
un-masking (masked positions) and re-masking (decoded positions, disjoint), so the random
stream, the samples and the NFE are identical for the same seed (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from oemdm_core import SampleResult
from oemdm_core.interfaces import (
    GRID_DESCRIPTION,
    DiffusionModel,
    DrawOptions,
    GridName,
    Segment,
    SegmentResult,
    SegmentSampler,
    StepCallback,
    StepGrid,
    sample_tokens,
    uniform,
    whole_sequence,
)


@dataclass
class RemaskSampleResult(SampleResult):
    """Samples of the `remdm` sampler, with the remasking record.

    tokens: `[N, L]`; order: `[N, L]` step of each position's *last* un-masking (−1 where
        fixed); nfe: denoiser calls.
    steps: steps taken (S).
    sigma: `[S, N, L]` float64, σ^i used at each step (0 on masked and fixed positions).
    remasked: `[S, N, L]` bool, positions sent back to the mask at each step.
    history: `[S + 1, N, L]` long, the state before the first step and after each step (the
        mask is id V); None when the sampler's `history` option is off (then `sigma` and
        `remasked` are None too).
    """

    steps: int = 0
    sigma: Tensor | None = None
    remasked: Tensor | None = None
    history: Tensor | None = None

    @property
    def num_remasked(self) -> Tensor | None:
        """`[N]` how many re-maskings each sample went through (None without history)."""
        return None if self.remasked is None else self.remasked.sum((0, 2))


class RemaskingSampler(SegmentSampler):
    """T ancestral steps of the reverse schedule with ReMDM remasking of decoded tokens:
    more steps let the sampler revise early mistakes (inference-time scaling)."""

    name = "remdm"
    has_cache = True

    class Options(DrawOptions):
        steps: int = Field(default=128, ge=1, description="Number of reverse steps T.")
        strategy: Literal["cap", "rescale", "confidence", "loop"] = Field(
            default="cap", description="How σ_t is set: cap, rescale, confidence or loop (ReMDM)."
        )
        eta: float = Field(
            default=0.02, ge=0.0, le=1.0, description="η in [0, 1]: the cap or rescale factor."
        )
        conf_scale: Literal["paper", "count"] = Field(
            default="paper",
            description="confidence: softmax weights as in ReMDM (paper) or × decoded count.",
        )
        t_loop: float | None = Field(
            default=None, gt=0.0, lt=1.0, description="loop: model time of the loop (None = t_on)."
        )
        t_on: float = Field(
            default=1.0, gt=0.0, le=1.0, description="Remask only while t <= t_on (switch)."
        )
        t_off: float = Field(
            default=0.0, ge=0.0, lt=1.0, description="Remask only while t > t_off."
        )
        cache: bool = Field(
            default=True, description="Reuse the denoiser output when the state is unchanged."
        )
        history: bool = Field(
            default=True, description="Record states, σ and re-masked positions per step."
        )
        grid: GridName = Field(default="uniform", description=GRID_DESCRIPTION)

        @model_validator(mode="after")
        def _remasking_window(self) -> RemaskingSampler.Options:
            if not self.t_off < self.t_on:
                raise ValueError(
                    f"remasking window needs 0 <= t_off < t_on <= 1, got t_off={self.t_off}, "
                    f"t_on={self.t_on}"
                )
            if self.strategy == "loop" and not (self.t_off > 0 and self.t_on < 1):
                raise ValueError(
                    f"strategy 'loop' needs 0 < t_off < t_on < 1 (e.g. t_off=0.05, t_on=0.55), "
                    f"got t_off={self.t_off}, t_on={self.t_on}"
                )
            if self.strategy == "loop" and self.grid != "uniform":
                raise ValueError(
                    f"strategy 'loop' sets its own model times on the uniform grid, got "
                    f"grid={self.grid!r}; use grid='uniform' (or another strategy)"
                )
            return self

    options: Options

    # -- σ ---------------------------------------------------------------------------------
    def sigma(
        self, alpha_t: Tensor, one_minus_alpha_s: Tensor, decoded: Tensor, psi: Tensor
    ) -> Tensor:
        """σ^i `[N, L]` float64 of one step from α_t, 1 − α_s `[N, L]`, the decoded positions
        and their confidences ψ (see module); before zeroing masked positions."""
        o = self.options
        sigma_max = torch.where(
            alpha_t > 0, (one_minus_alpha_s / alpha_t.clamp_min(1e-300)).clamp(max=1.0), 0.0
        )
        if o.strategy in ("cap", "loop"):
            return sigma_max.clamp(max=o.eta)
        base = o.eta * sigma_max
        if o.strategy == "rescale":
            return base
        logits = torch.where(decoded, -psi, -torch.inf)
        weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # rows with nothing decoded
        if o.conf_scale == "count":
            weights = weights * decoded.sum(-1, keepdim=True).to(base.dtype)
        return torch.where(decoded, torch.minimum(base * weights, sigma_max), base)

    def model_time(self, tau: float) -> float:
        """The model's time at sampler time τ ∈ [0, 1]: τ itself, except for `loop` (see
        module: 1 → t_loop on [t_on, 1], t_loop on [t_off, t_on), t_loop → 0 below t_off)."""
        o = self.options
        if o.strategy != "loop":
            return tau
        t_loop = o.t_on if o.t_loop is None else o.t_loop
        if tau >= o.t_on:
            return t_loop + (tau - o.t_on) / (1.0 - o.t_on) * (1.0 - t_loop)
        if tau >= o.t_off:
            return t_loop
        return tau * t_loop / o.t_off

    # -- sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        model: DiffusionModel,
        num_samples: int,
        length: int | None = None,
        generator: torch.Generator | None = None,
        fixed: Tensor | None = None,
        callback: StepCallback | None = None,
    ) -> SampleResult:
        segment, keep = whole_sequence(model, num_samples, length, fixed, callback)
        return self.run(segment, keep, generator)

    @torch.no_grad()
    def fill_segment(
        self, segment: Segment, generator: torch.Generator | None = None
    ) -> SegmentResult:
        """Fill a segment (e.g. a block of the `block` sampler); its given tokens are kept."""
        keep = segment.tokens != segment.mask_id
        result = self.run(segment, keep, generator)
        return SegmentResult(result.tokens, result.order, result.nfe, result.steps)

    def run(
        self, segment: Segment, keep: Tensor, generator: torch.Generator | None = None
    ) -> RemaskSampleResult:
        """T steps from `segment.t_start` to `segment.t_end` (grid as the ancestral sampler's);
        `keep: [N, n]` marks positions that are never re-masked."""
        o = self.options
        z = segment.tokens.clone()
        mask_id = segment.mask_id
        order = torch.full_like(z, -1)
        psi = torch.zeros(z.shape, dtype=torch.float64, device=z.device)
        states, sigmas, remasks = [z.clone()], [], []
        reuse = o.cache and not segment.uses_time
        out, nfe, changed, steps_used = None, 0, True, 0
        width = segment.t_start - segment.t_end
        grid = StepGrid(o.grid, o.steps, z.shape[0], segment.t_start, segment.t_end, z.device)
        for step, k in enumerate(range(o.steps, 0, -1)):
            masked = z == mask_id
            tau = k / o.steps  # sampler time: the fraction of the steps still to run
            if not bool(masked.any()) and (o.eta == 0 or tau <= o.t_off):
                break  # nothing left to do (with remasking ahead, tokens may still be revised)
            if o.strategy == "loop":
                t_k = segment.t_end + width * self.model_time(tau)
                t = torch.full((z.shape[0],), t_k, device=z.device)
            else:  # the ancestral sampler's grid, bit for bit
                t = grid.start(step)
            if out is None or changed or not reuse:
                out = segment.denoise(z, t)
                nfe += 1
            reverse = segment.schedule(z, t, out)
            if o.strategy == "loop":
                s_k = segment.t_end + width * self.model_time((k - 1) / o.steps)
                s = torch.full((z.shape[0],), s_k, device=z.device)
            else:
                s = grid.end(step, reverse, masked, t)
            prob = reverse.unmask_probability(s, t).to(torch.float64)  # [N, n], a_R
            decoded = ~masked & ~keep
            sigma = torch.zeros_like(prob)
            if o.eta > 0 and k > 1 and o.t_off < tau <= o.t_on:
                alpha_t = reverse.alpha(t).to(torch.float64)
                one_minus_t = reverse.one_minus_alpha(t).to(torch.float64)
                one_minus_s = reverse.one_minus_alpha(s).to(torch.float64)
                sigma = self.sigma(alpha_t, one_minus_s, decoded, psi)
                extra = sigma * alpha_t / one_minus_t.clamp_min(1e-300)
                prob = torch.where(masked & (sigma > 0), prob + extra, prob)
                sigma = torch.where(decoded, sigma, 0.0)
            u = uniform(tuple(z.shape), generator, z.device)  # one draw serves both branches
            reveal = masked & (u < prob)
            remask = decoded & (u < sigma)
            if k == 1:
                reveal = masked  # α(t_end) = 1: everything is clean at the end
            tokens = sample_tokens(out.logits, generator, o.temperature, o.top_p)
            z = torch.where(reveal, tokens, z)
            z = torch.where(remask, torch.full_like(z, mask_id), z)
            order = torch.where(reveal, step, torch.where(remask, -1, order))
            segment.report(step, t, s, z, order)
            if o.strategy == "confidence":
                probs = torch.softmax(out.logits.double(), dim=-1)
                drawn = probs.gather(-1, tokens[..., None])[..., 0]
                psi = torch.where(reveal, drawn, psi)
            changed = bool(reveal.any()) or bool(remask.any())
            steps_used = step + 1
            if o.history:
                states.append(z.clone())
                sigmas.append(sigma)
                remasks.append(remask)
        record = o.history and steps_used > 0
        return RemaskSampleResult(
            tokens=z,
            order=torch.where(keep, torch.full_like(order, -1), order),
            nfe=nfe,
            steps=steps_used,
            sigma=torch.stack(sigmas) if record else None,
            remasked=torch.stack(remasks) if record else None,
            history=torch.stack(states) if record else None,
        )
