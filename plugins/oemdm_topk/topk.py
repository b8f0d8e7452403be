"""The `topk` sampler: exactly k positions per step, chosen by a scorer plugin.

Step rule (T steps on the grid t_k = k/T, k = T … 1, reverse time 1 → 0). For each sample:

    k_step = ⌊ Σ_{i masked, a_R^i > 0} a_R^i + 1/2 ⌋,   a_R^i = reverse.unmask_probability(t_{k−1}, t_k)

i.e. the expected number of positions the ancestral sampler would un-mask in this step under
the model's reverse schedule at the current state, rounded half up, and at the last step
(k = 1, where a_R = 1) every position still masked. Because the expectation is recomputed
from the state, rounding errors do not accumulate, and after T steps all L positions are
generated. With `mdm` and the linear schedule this spreads the m masked positions evenly over
the remaining steps (round(m/k)); for `lomdm` it follows the learned reverse schedule.

Candidates are the masked positions with a_R > 0 (so `block`/`ar` orders keep their windows);
among them the k with the highest scores are un-masked, each taking a token drawn from p_θ
(temperature, top_p). The scorer ranks positions (`plackett-luce` on the reverse velocities,
`confidence`, `margin`, `entropy`, `random`, or any registered scorer).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, Field
from torch import Tensor
from typing_extensions import Self

from oemdm_core import ComponentRegistry, Scorer, resolve_registry
from oemdm_core.interfaces import (
    DrawOptions,
    Segment,
    SegmentResult,
    SegmentSampler,
    sample_tokens,
    time_grid,
)


def step_counts(prob: Tensor, eligible: Tensor, last: bool) -> Tensor:
    """Positions to un-mask per row: `[N]` long, from `prob, eligible: [N, L]` (see module)."""
    if last:
        return eligible.sum(-1)
    expected = torch.where(eligible, prob.to(torch.float64), 0.0).sum(-1)
    return torch.floor(expected + 0.5).long().clamp(max=eligible.sum(-1))


def top_k_mask(scores: Tensor, eligible: Tensor, counts: Tensor) -> Tensor:
    """`[N, L]` bool: the `counts[n]` eligible positions of row n with the highest scores."""
    lowest = torch.finfo(torch.float64).min
    scores = torch.where(eligible, scores.to(torch.float64).nan_to_num(neginf=lowest), -torch.inf)
    ranked = scores.argsort(dim=-1, descending=True, stable=True)  # [N, L]
    rank = torch.empty_like(ranked).scatter_(
        -1, ranked, torch.arange(scores.shape[-1], device=scores.device).expand_as(ranked)
    )
    return eligible & (rank < counts[:, None])


class TopKSampler(SegmentSampler):
    """T steps, exactly k_step positions per step (k from the reverse schedule), ranked by a
    scorer: a user can sample an MDM in confidence order or a LoMDM in its learned order."""

    name = "topk"

    class Options(DrawOptions):
        steps: int = Field(default=64, ge=1, description="Number of reverse steps T.")
        scorer: str = Field(
            default="plackett-luce",
            description="Registry name of the scorer that ranks masked positions.",
        )

    options: Options

    def __init__(self, registry: ComponentRegistry | None = None, **options: Any) -> None:
        """`scorer`: a built `Scorer` (used as it is; the option records its name, not its
        options), or the registry name of one (None: the option's default), built from
        `registry`."""
        scorer: str | Scorer | None = options.pop("scorer", None)
        if isinstance(scorer, Scorer):
            super().__init__(scorer=scorer.name, **options)
            self.scorer_impl = scorer
            return
        if scorer is not None and not isinstance(scorer, str):
            raise TypeError(f"scorer must be a registry name or a Scorer, got {scorer!r}")
        super().__init__(**options, **({} if scorer is None else {"scorer": scorer}))
        # An unknown name raises, listing the registered scorers.
        self.scorer_impl = resolve_registry(registry).build("scorer", self.options.scorer)

    @classmethod
    def from_options(cls, options: BaseModel, registry: ComponentRegistry | None = None) -> Self:
        return cls(registry=registry, **dict(options))

    @torch.no_grad()
    def fill_segment(
        self, segment: Segment, generator: torch.Generator | None = None
    ) -> SegmentResult:
        """T steps from `segment.t_start` to `segment.t_end` (the ancestral grid), exactly
        k_step positions per step."""
        o = self.options
        z = segment.tokens.clone()
        order = torch.full_like(z, -1)
        nfe, steps_used = 0, 0
        for step in time_grid(segment, o.steps):
            masked = z == segment.mask_id
            if not bool(masked.any()):
                break
            out = segment.denoise(z, step.t)
            nfe += 1
            reverse = segment.schedule(z, step.t, out)
            prob = reverse.unmask_probability(step.s, step.t).to(torch.float64)  # [N, n]
            eligible = masked if step.last else masked & (prob > 0)
            counts = step_counts(prob, eligible, step.last)
            scores = self.scorer_impl.score(out.logits, reverse.velocity(step.t), generator)
            reveal = top_k_mask(scores, eligible, counts)
            tokens = sample_tokens(out.logits, generator, o.temperature, o.top_p)
            z = torch.where(reveal, tokens, z)
            order = torch.where(reveal, step.index, order)
            segment.report(step.index, step.t, step.s, z, order)
            steps_used = step.index + 1
        return SegmentResult(tokens=z, order=order, nfe=nfe, steps=steps_used)
