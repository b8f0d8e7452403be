"""What samplers share: a run of positions to generate (`Segment`), the rule interface that
fills one (`SegmentRule`), and option checks.

A sampler over the whole sequence fills one segment (all positions, reverse time 1 → 0);
the `block` sampler fills one segment per block (the block's time window), with a denoiser
that reads earlier blocks from a KV cache. Any sampler implementing `fill_segment` can serve
as the `block` sampler's inner rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from oemdm_core import DenoiserOutput, PositionSchedule, SampleResult
from oemdm_core.interfaces.sampler import initial_state

Denoise = Callable[[Tensor, Tensor], DenoiserOutput]
ReverseSchedule = Callable[[Tensor, Tensor, DenoiserOutput], PositionSchedule]


@dataclass
class Segment:
    """Positions to generate while reverse time runs from `t_start` down to `t_end`.

    tokens: `[N, n]` current state of the segment; entries equal to `mask_id` are generated,
        the others are kept (fixed by the caller or already generated).
    denoise: (state `[N, n]`, t `[N]`) → `DenoiserOutput` with logits `[N, n, V]` for the
        segment (the rest of the sequence, if any, is the denoiser's business).
    schedule: (state, t, output of `denoise` at (state, t)) → reverse `PositionSchedule`
        whose `[N, n]` columns are the segment's positions.
    uses_time: False if the denoiser ignores t (lets rules reuse a call on an unchanged state).
    """

    tokens: Tensor
    mask_id: int
    denoise: Denoise
    schedule: ReverseSchedule
    t_start: float = 1.0
    t_end: float = 0.0
    uses_time: bool = True


@dataclass
class SegmentResult:
    """A filled segment.

    tokens: `[N, n]` with no mask left.
    order: `[N, n]` long, 0-based step at which each position was un-masked, −1 where the
        position was not generated (kept from the input state).
    nfe: denoiser calls made.
    steps: number of steps used (order values lie in [0, steps)), to offset later segments.
    """

    tokens: Tensor
    order: Tensor
    nfe: int
    steps: int


@runtime_checkable
class SegmentRule(Protocol):
    """A sampling rule that can fill any `Segment` (ancestral, first-hitting, …)."""

    def fill_segment(
        self, segment: Segment, generator: torch.Generator | None = None
    ) -> SegmentResult: ...


def check_common(steps: int | None = None, top_p: float = 1.0, temperature: float = 1.0) -> None:
    """Raise `ValueError` for steps < 1, top_p outside (0, 1] or a negative temperature."""
    if steps is not None and (isinstance(steps, bool) or int(steps) != steps or steps < 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = argmax), got {temperature}")


def uniform(shape: tuple[int, ...], generator: torch.Generator | None, device) -> Tensor:
    """U(0, 1) draws in float64 on `device`, made on the generator's device."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=source).to(device)


def whole_sequence(
    model, num_samples: int, length: int | None, fixed: Tensor | None
) -> tuple[Segment, Tensor]:
    """The whole sequence as one segment on `model` (all masked but the `fixed` positions),
    and the `[N, L]` mask of the fixed positions."""
    length = model.length if length is None else length
    z, keep = initial_state(model, num_samples, length, fixed)
    segment = Segment(
        tokens=z,
        mask_id=model.mask_id,
        denoise=model.denoise,
        schedule=model.reverse_schedule,
        uses_time=model.backbone.uses_time,
    )
    return segment, keep


def sample_whole_sequence(
    rule: SegmentRule,
    model,
    num_samples: int,
    length: int | None,
    generator: torch.Generator | None,
    fixed: Tensor | None,
) -> SampleResult:
    """Fill the whole sequence as one segment (reverse time 1 → 0) with `model.denoise`."""
    segment, keep = whole_sequence(model, num_samples, length, fixed)
    result = rule.fill_segment(segment, generator)
    order = torch.where(keep, torch.full_like(result.order, -1), result.order)
    return SampleResult(tokens=result.tokens, order=order, nfe=result.nfe)


class SlicedSchedule(PositionSchedule):
    """Columns `[lo, hi)` of another `PositionSchedule` (a block's view of the sequence)."""

    def __init__(self, schedule: PositionSchedule, lo: int, hi: int) -> None:
        self.schedule, self.lo, self.hi = schedule, lo, hi
        self.rows = schedule.rows

    def alpha(self, t):
        return self.schedule.alpha(t)[:, self.lo : self.hi]

    def velocity(self, t):
        return self.schedule.velocity(t)[:, self.lo : self.hi]

    def one_minus_alpha(self, t):
        return self.schedule.one_minus_alpha(t)[:, self.lo : self.hi]

    def unmask_probability(self, s, t):
        return self.schedule.unmask_probability(s, t)[:, self.lo : self.hi]
