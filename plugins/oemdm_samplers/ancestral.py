"""Ancestral sampling of the reverse process on a grid of T steps."""

from __future__ import annotations

import torch
from pydantic import Field

from oemdm_core.interfaces import (
    GRID_DESCRIPTION,
    DrawOptions,
    GridName,
    Segment,
    SegmentResult,
    SegmentSampler,
    StepGrid,
    sample_tokens,
    uniform,
)


class AncestralSampler(SegmentSampler):
    """T steps t → s of a grid (uniform t_k = k/T, or equal-reveal: see
    `oemdm_core.interfaces.grids`): each masked position is un-masked with the reverse
    schedule's probability (α_R(s) − α_R(t)) / (1 − α_R(t)) and draws its token from p_θ.

    When no position changed in a step and the backbone ignores t, the previous denoiser
    output is reused (one network call per distinct state).
    """

    name = "ancestral"
    has_cache = True

    class Options(DrawOptions):
        steps: int = Field(default=64, ge=1, description="Number of reverse steps T.")
        cache: bool = Field(
            default=True, description="Reuse the denoiser output when the state is unchanged."
        )
        grid: GridName = Field(default="uniform", description=GRID_DESCRIPTION)

    options: Options

    @torch.no_grad()
    def fill_segment(
        self, segment: Segment, generator: torch.Generator | None = None
    ) -> SegmentResult:
        """T steps from `segment.t_start` to `segment.t_end` on the `grid` (uniform:
        t_k = t_end + (t_start − t_end)·k/T); at the last step every masked position is
        un-masked (α(t_end) = 1 on the segment's positions)."""
        o = self.options
        z = segment.tokens.clone()
        order = torch.full_like(z, -1)
        reuse = o.cache and not segment.uses_time
        out, nfe, changed, steps_used = None, 0, True, 0
        grid = StepGrid(o.grid, o.steps, z.shape[0], segment.t_start, segment.t_end, z.device)
        for index in range(o.steps):
            masked = z == segment.mask_id
            if not bool(masked.any()):
                break
            t = grid.start(index)
            if out is None or changed or not reuse:
                out = segment.denoise(z, t)
                nfe += 1
            reverse = segment.schedule(z, t, out)
            s = grid.end(index, reverse, masked, t)
            prob = reverse.unmask_probability(s, t).to(torch.float64)  # [N, n]
            reveal = masked & (uniform(tuple(z.shape), generator, z.device) < prob)
            if index == o.steps - 1:
                reveal = masked  # α(t_end) = 1: everything is clean at the end of the segment
            tokens = sample_tokens(out.logits, generator, o.temperature, o.top_p)
            z = torch.where(reveal, tokens, z)
            order = torch.where(reveal, index, order)
            segment.report(index, t, s, z, order)
            changed = bool(reveal.any())
            steps_used = index + 1
        return SegmentResult(tokens=z, order=order, nfe=nfe, steps=steps_used)
