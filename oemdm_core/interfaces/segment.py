"""The segment protocol: a run of positions to generate (`Segment`), what filling it returns
(`SegmentResult`), and `SegmentSampler`, the samplers that can fill any segment.

A sampler over the whole sequence fills one segment (all positions, reverse time 1 → 0);
the `block` sampler fills one segment per block (the block's time window), with a denoiser
that reads earlier blocks from a KV cache. Every `SegmentSampler` can be its inner rule.

Step callbacks: `SegmentSampler.sample(..., callback=fn)` calls `fn(StepInfo)` after every
step (`steps = []; sampler.sample(model, 4, callback=steps.append)` keeps the history). The
protocol carries it: `whole_sequence` puts `fn` into `Segment.on_step`, and a rule's
`fill_segment` calls `segment.report(...)` once per step it takes.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from oemdm_core.interfaces.backbone import DenoiserOutput
from oemdm_core.interfaces.model import DiffusionModel
from oemdm_core.interfaces.position_schedule import PositionSchedule
from oemdm_core.interfaces.sampler import Sampler, SampleResult, initial_state

Denoise = Callable[[Tensor, Tensor], DenoiserOutput]
ReverseSchedule = Callable[[Tensor, Tensor, DenoiserOutput], PositionSchedule]


@dataclass
class StepInfo:
    """One finished sampler step, as a step callback receives it.

    index: 0-based step, the value `SampleResult.order` holds at the positions it revealed.
    t, s: `[N]` reverse time at the start and the end of the step (t ≥ s; an event sampler
        such as first-hitting reports its event time as both).
    state: `[N, L]` ids after the step (the mask is id V); do not modify it in place.
    revealed: `[N, L]` bool, the positions un-masked in this step.
    """

    index: int
    t: Tensor
    s: Tensor
    state: Tensor
    revealed: Tensor


StepCallback = Callable[[StepInfo], None]


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
    on_step: the step callback, or None; a rule calls it through `report`.
    """

    tokens: Tensor
    mask_id: int
    denoise: Denoise
    schedule: ReverseSchedule
    t_start: float = 1.0
    t_end: float = 0.0
    uses_time: bool = True
    on_step: StepCallback | None = None

    def report(self, index: int, t: Tensor, s: Tensor, state: Tensor, order: Tensor) -> None:
        """Hand step `index` (times `[N]`; the state and the rule's order so far, `[N, n]`) to
        `on_step`, if any. Nothing is computed without a callback; the revealed mask is
        `order == index`, and the state is copied, so a rule may go on changing its own."""
        if self.on_step is not None:
            self.on_step(StepInfo(index, t, s, state.clone(), order == index))


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


@dataclass
class GridStep:
    """One step of a T-step grid over a segment's time window: reverse time goes from `t` to
    `s` (`[N]` each); `index` counts steps from 0; `last` marks the step that ends at
    `t_end`, after which every position of the segment must be clean."""

    index: int
    s: Tensor
    t: Tensor
    last: bool


def time_grid(segment: Segment, steps: int) -> Iterator[GridStep]:
    """The grid t_k = t_end + (t_start − t_end)·k/T, k = T … 1, as `GridStep`s."""
    rows, device = segment.tokens.shape[0], segment.tokens.device
    width = segment.t_start - segment.t_end
    for index, k in enumerate(range(steps, 0, -1)):
        t = torch.full((rows,), segment.t_end + width * k / steps, device=device)
        s = torch.full((rows,), segment.t_end + width * (k - 1) / steps, device=device)
        yield GridStep(index=index, s=s, t=t, last=k == 1)


class SegmentSampler(Sampler):
    """A sampler that can fill any `Segment`; `sample` fills the whole sequence as one.

    `fill_segment` calls `segment.report(...)` after every step, so every SegmentSampler
    takes a step callback (`reports_steps`; the conformance kit checks it).
    """

    reports_steps: ClassVar[bool] = True

    @abstractmethod
    def fill_segment(
        self, segment: Segment, generator: torch.Generator | None = None
    ) -> SegmentResult:
        """Generate the masked entries of `segment.tokens` while reverse time runs from
        `segment.t_start` to `segment.t_end`; at the end no mask is left. After each step,
        call `segment.report(index, t, s, state, order)`."""

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
        result = self.fill_segment(segment, generator)
        order = torch.where(keep, torch.full_like(result.order, -1), result.order)
        return SampleResult(tokens=result.tokens, order=order, nfe=result.nfe)


def whole_sequence(
    model: DiffusionModel,
    num_samples: int,
    length: int | None,
    fixed: Tensor | None,
    callback: StepCallback | None = None,
) -> tuple[Segment, Tensor]:
    """The whole sequence as one segment on `model` (all masked but the `fixed` positions,
    steps reported to `callback`), and the `[N, L]` mask of the fixed positions."""
    length = model.length if length is None else length
    z, keep = initial_state(model, num_samples, length, fixed)
    segment = Segment(
        tokens=z,
        mask_id=model.mask_id,
        denoise=model.denoise,
        schedule=model.reverse_schedule,
        uses_time=model.backbone.uses_time,
        on_step=callback,
    )
    return segment, keep
