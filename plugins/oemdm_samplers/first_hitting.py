"""First-hitting sampling: exact simulation of the continuous-time reverse process, one
position per event (as BD3-LM's first-hitting sampler), so NFE = number of generated positions.

What it simulates. In the continuous-time reverse process a masked position i is un-masked
with hazard v_R^i(t) (reverse time runs 1 → 0), and when it is un-masked at time τ it draws
its token from p_θ(· | z_τ, τ), z_τ being the state just before the event. Between events
the state does not change, so the process is a sequence of events; this sampler draws each
event's time and position exactly and calls the denoiser once per event, at the pre-event
state and the event time.

For which orders it is exact.
- Data-independent schedules (`mdm`, `block`, `ar` and any fixed order: the reverse schedule
  has `rows is None`). Positions are independent and un-mask at their own reveal times R_i,
  with P(R_i < s | masked at t) = (1 − α^i(s)) / (1 − α^i(t)). The sampler draws every R_i
  once by inverting that function (bisection in float64 on the schedule's `one_minus_alpha`,
  so any base schedule works) and visits the events in decreasing R. Exact for any backbone,
  time-conditioned or not (the denoiser gets t = R_i).
- Power-law reverse schedules that depend on the state, α_R^i(z, s) = 1 − s^{ŵ^i(z)} (LoMDM,
  GenMD4), with a backbone that ignores t: the hazard ŵ^i(z)/s changes only when z changes,
  so from time t the next event time is τ = t·U^{1/Σ_masked ŵ} and the position is i with
  probability ŵ^i / Σ_masked ŵ (Plackett–Luce). The exponents are read as ŵ = t·v_R(t) and
  checked at t/2 (a schedule that is not of this form is refused). With a time-conditioned
  backbone ŵ would drift between events, so this case is refused.
Any other state-dependent schedule raises a `ValueError`.

NFE: one call per event, i.e. the number of generated positions; with a time-conditioned
backbone one more (the first call, at t_start, only reads the schedule).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from oemdm_core import PositionSchedule, WindowedSchedule
from oemdm_core.interfaces import (
    BaseSchedule,
    DenoiserOutput,
    DrawOptions,
    Segment,
    SegmentResult,
    SegmentSampler,
    SlicedSchedule,
    sample_tokens,
    uniform,
)

BISECTION_STEPS = 64


def reveal_times(
    schedule: PositionSchedule,
    u: Tensor,
    t_start: float,
    t_end: float,
) -> Tensor:
    """Reveal times R `[N, n]` in [t_end, t_start] of positions masked at t_start, from
    uniforms `u: [N, n]`: R = inf{s : 1 − α^i(s) ≥ u·(1 − α^i(t_start))}, so that
    P(R < s) = (1 − α^i(s)) / (1 − α^i(t_start)).

    `schedule` must be data-independent (`rows is None`). Windowed schedules (all built-in
    fixed orders) are inverted through their base schedule; any other one through the
    diagonal of `one_minus_alpha` on a column of times (position i at its own time)."""
    windows = _windows(schedule, u.shape[1])
    if windows is not None:
        base, lo, hi = windows
        width = hi - lo
        start = ((t_start - lo) / width).clamp(0.0, 1.0)  # [n] base time at t_start
        target = u * base.one_minus_alpha(start).to(torch.float64)  # [N, n]
        s = _bisect(lambda x: base.one_minus_alpha(x).to(torch.float64), target, 0.0, start)
        return (lo + width * s).clamp(t_end, t_start)
    rows, n = u.shape
    chunk = max(1, (1 << 20) // (n * n))  # rows per evaluation, ~1M entries
    eye = torch.eye(n, dtype=torch.bool, device=u.device)
    out = torch.empty_like(u)
    for r in range(0, rows, chunk):
        block = u[r : r + chunk]
        m = block.shape[0]
        diagonal = eye.repeat(m, 1)  # [m·n, n]

        def one_minus_alpha(times: Tensor, m: int = m, diagonal: Tensor = diagonal) -> Tensor:
            full = schedule.one_minus_alpha(times.reshape(-1)).to(torch.float64)  # [m·n, n]
            return full.masked_select(diagonal).reshape(m, n)

        first = torch.full((m, n), float(t_start), dtype=torch.float64, device=u.device)
        target = block * one_minus_alpha(first)
        out[r : r + m] = _bisect(one_minus_alpha, target, t_end, first)
    return out


def _bisect(f: Callable[[Tensor], Tensor], target: Tensor, lo: float, hi: Tensor) -> Tensor:
    """Smallest x in [lo, hi] with f(x) ≥ target, elementwise, for non-decreasing f."""
    upper = (torch.zeros_like(target) + hi).to(torch.float64)
    lower = torch.full_like(upper, float(lo))
    for _ in range(BISECTION_STEPS):  # invariant: f(upper) ≥ target
        mid = 0.5 * (lower + upper)
        above = f(mid) >= target
        upper, lower = torch.where(above, mid, upper), torch.where(above, lower, mid)
    return upper


def _windows(schedule: PositionSchedule, n: int) -> tuple[BaseSchedule, Tensor, Tensor] | None:
    """(base, lo `[n]`, hi `[n]`) if `schedule` is a (column slice of a) WindowedSchedule."""
    columns = slice(None)
    if isinstance(schedule, SlicedSchedule):
        columns, schedule = slice(schedule.lo, schedule.hi), schedule.schedule
    if not isinstance(schedule, WindowedSchedule):
        return None
    lo, hi = schedule.lo[columns], schedule.hi[columns]
    return (schedule.base, lo, hi) if lo.shape == (n,) else None


class FirstHittingSampler(SegmentSampler):
    """Exact continuous-time reverse process, one un-masked position per denoiser call."""

    name = "first-hitting"

    class Options(DrawOptions):
        """Temperature and top_p: the un-masking times are drawn exactly, not on a grid."""

    options: Options

    @torch.no_grad()
    def fill_segment(
        self, segment: Segment, generator: torch.Generator | None = None
    ) -> SegmentResult:
        z = segment.tokens.clone()
        rows = z.shape[0]
        if not bool((z == segment.mask_id).any()):
            return SegmentResult(tokens=z, order=torch.full_like(z, -1), nfe=0, steps=0)
        t = torch.full((rows,), float(segment.t_start), dtype=torch.float64, device=z.device)
        out = segment.denoise(z, t.float())
        schedule = segment.schedule(z, t.float(), out)
        if schedule.rows is None:
            return self._fixed(segment, z, schedule, out, generator)
        return self._power_law(segment, z, t, schedule, out, generator)

    def _draw(
        self,
        out: DenoiserOutput,
        z: Tensor,
        position: Tensor,
        active: Tensor,
        generator: torch.Generator | None,
    ) -> Tensor:
        """Draw the token at `position [N]` from `out.logits`; rows not `active` keep z."""
        rows = torch.arange(z.shape[0], device=z.device)
        logits = out.logits[rows, position]  # [N, V]
        token = sample_tokens(logits, generator, self.options.temperature, self.options.top_p)
        current = z[rows, position]
        return torch.where(active, token, current)

    def _fixed(
        self,
        segment: Segment,
        z: Tensor,
        schedule: PositionSchedule,
        out: DenoiserOutput,
        generator: torch.Generator | None,
    ) -> SegmentResult:
        masked = z == segment.mask_id
        u = uniform(tuple(z.shape), generator, z.device)
        times = reveal_times(schedule, u, segment.t_start, segment.t_end)
        times = torch.where(masked, times, torch.full_like(times, -1.0))  # kept: never
        events = times.argsort(dim=1, descending=True)  # [N, n] positions by event
        counts = masked.sum(1)  # [N]
        order = torch.full_like(z, -1)
        rows = torch.arange(z.shape[0], device=z.device)
        nfe, total = 1, int(counts.max())
        for k in range(total):
            position = events[:, k]
            active = counts > k
            t_event = times[rows, position].clamp_min(0.0).float()
            # The first call (at t_start, same state) serves event 0 unless t matters.
            if k > 0 or segment.uses_time:
                out = segment.denoise(z, t_event)
                nfe += 1
            z[rows, position] = self._draw(out, z, position, active, generator)
            order[rows[active], position[active]] = k
            segment.report(k, t_event, t_event, z, order)
        return SegmentResult(tokens=z, order=order, nfe=nfe, steps=total)

    def _power_law(
        self,
        segment: Segment,
        z: Tensor,
        t: Tensor,
        schedule: PositionSchedule,
        out: DenoiserOutput,
        generator: torch.Generator | None,
    ) -> SegmentResult:
        if segment.uses_time:
            raise ValueError(
                "first-hitting with a state-dependent reverse schedule needs a backbone that "
                "ignores t (the hazard ŵ(z_t)/t must change only when z_t does); this backbone "
                "is time-conditioned: use 'ancestral' or 'topk'"
            )
        order = torch.full_like(z, -1)
        rows = torch.arange(z.shape[0], device=z.device)
        step, nfe = 0, 1
        while True:
            masked = z == segment.mask_id
            if not bool(masked.any()):
                break
            w = self._exponents(schedule, t, masked)  # [N, n], 0 where not masked
            total = w.sum(1)
            active = masked.any(1)
            u = uniform((z.shape[0],), generator, z.device)
            safe_total = torch.where(active, total, torch.ones_like(total))
            t = torch.where(active, t * u.pow(1.0 / safe_total), t)
            g = uniform(tuple(z.shape), generator, z.device)
            # Categorical(w / Σw) through Gumbel-max on log w (masked positions only).
            keys = torch.where(masked, w.log() - torch.log(-torch.log(g)), -torch.inf)
            position = keys.argmax(1)
            z[rows, position] = self._draw(out, z, position, active, generator)
            order[rows[active], position[active]] = step
            segment.report(step, t, t, z, order)
            step += 1
            if bool((z == segment.mask_id).any()):
                out = segment.denoise(z, t.float())
                nfe += 1
                schedule = segment.schedule(z, t.float(), out)
        return SegmentResult(tokens=z, order=order, nfe=nfe, steps=step)

    @staticmethod
    def _exponents(schedule: PositionSchedule, t: Tensor, masked: Tensor) -> Tensor:
        """ŵ = t·v_R(t) on masked positions, checked to be constant in time (power law)."""
        t_col = t.clamp_min(1e-12)
        w = (t_col[:, None] * schedule.velocity(t_col).to(torch.float64)).where(masked, 0.0)
        half = (0.5 * t_col[:, None] * schedule.velocity(0.5 * t_col).to(torch.float64)).where(
            masked, 0.0
        )
        if not torch.allclose(w, half, rtol=1e-5, atol=1e-9) or bool((w[masked] <= 0).any()):
            raise ValueError(
                "first-hitting is exact for data-independent schedules and for state-dependent "
                "power-law schedules α = 1 − t^ŵ(z) (velocity ŵ/t); this reverse schedule is "
                "neither (t·velocity changes with t or is not positive)"
            )
        return w
