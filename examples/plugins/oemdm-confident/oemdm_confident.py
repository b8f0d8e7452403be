"""A sampler plugin for oemdm: at each step, un-mask the positions the model is surest of.

What a sampler plugin needs, and where it comes from (all from `oemdm_core`):
- `SegmentSampler`: implement `fill_segment(segment, generator)`; `sample` (whole sequence),
  the block sampler's inner rule and the step callback come with it.
- `DrawOptions`: the shared `temperature` and `top_p` options; `sample_tokens` applies them.
- `time_grid(segment, T)`: the steps t → s of the segment's time window (reverse time runs
  from `segment.t_start` down to `segment.t_end`).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from oemdm_core import DrawOptions, Segment, SegmentResult, SegmentSampler, hookimpl
from oemdm_core.interfaces import sample_tokens, time_grid


class MostConfident(SegmentSampler):
    """T steps; each un-masks ⌈m/k⌉ of the m positions still masked (k steps left), those
    whose most likely token has the highest probability, among the positions the reverse
    schedule lets un-mask in the step (so `block` and `ar` orders keep their windows)."""

    name = "most-confident"

    class Options(DrawOptions):  # temperature, top_p
        steps: int = Field(default=16, ge=1, description="Number of reverse steps T.")

    @torch.no_grad()
    def fill_segment(self, segment: Segment, generator=None) -> SegmentResult:
        o = self.options
        z = segment.tokens.clone()  # [N, n]
        order = torch.full_like(z, -1)
        nfe, steps = 0, 0
        for step in time_grid(segment, o.steps):
            masked = z == segment.mask_id
            if not bool(masked.any()):
                break
            # The state z is a draw of z_t: the denoiser gets the time at the step's start.
            out = segment.denoise(z, step.t)  # logits [N, n, V]
            nfe += 1
            prob = segment.schedule(z, step.t, out).unmask_probability(step.s, step.t)
            eligible = masked if step.last else masked & (prob > 0)
            left = o.steps - step.index  # steps left, this one included
            count = eligible.sum(1).double().div(left).ceil().long()  # [N]
            confidence = out.logits.log_softmax(-1).amax(-1)  # [N, n]
            confidence = torch.where(eligible, confidence, -math.inf)
            rank = confidence.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
            reveal = eligible & (rank < count[:, None])
            tokens = sample_tokens(out.logits, generator, o.temperature, o.top_p)
            z = torch.where(reveal, tokens, z)
            order = torch.where(reveal, step.index, order)
            segment.report(step.index, step.t, step.s, z, order)  # the step callback
            steps = step.index + 1
        return SegmentResult(tokens=z, order=order, nfe=nfe, steps=steps)


@hookimpl
def register_samplers(register):
    register(MostConfident)
