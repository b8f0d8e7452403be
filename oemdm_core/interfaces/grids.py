"""Sampling grids: the times t > s of each reverse step, for samplers and for L_T.

Two grids of T steps over a time window [t_end, t_start] (the whole sequence: [0, 1]):

- `uniform`: t_k = t_end + (t_start − t_end)·k/T, k = T … 1 (the grid of `time_grid`); the
  same for every state.
- `equal-reveal`: a step from t with n masked positions and k steps left ends at the s in
  [t_end, t] where the reverse schedule expects to un-mask n / k of them,

      Σ_{i masked} a_R^i(s, t) = n / k,   a_R^i = reverse.unmask_probability(s, t),

  so that every step reveals the same number of tokens in expectation. The reverse schedule
  is the one the step uses anyway (read from the state and the denoiser output at t): no
  extra denoiser call. The sum grows as s falls (α_R is non-increasing), from 0 at s = t to
  n at s = t_end (α_R(t_end) = 1 on the window's positions), so bisection on s finds it for
  any `PositionSchedule`, also piecewise ones (block windows, where a_R is 0 or 1 outside a
  window). The last step (k = 1) ends at t_end. With MDM's linear schedule, a_R = 1 − s/t
  for every position and s = t·(1 − 1/k): the uniform grid again. With α^i = 1 − t^{w_i}
  it solves Σ_{masked} (1 − (s/t)^{w_i}) = n / k: positions with small w are no longer left
  for a last step that draws them all at once.

The equal-reveal grid depends on the state, so it is a different discrete-time bound L_T;
`oemdm_core.nelbo.grid` estimates it on the same grid (`oemdm eval --steps T --grid …`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from oemdm_core.interfaces.position_schedule import PositionSchedule

GridName = Literal["uniform", "equal-reveal"]
GRIDS: tuple[str, ...] = ("uniform", "equal-reveal")
GRID_DESCRIPTION = (
    "Reverse-time grid: uniform (t_k = k/T) or equal-reveal (each step ends where the "
    "reverse schedule expects to un-mask 1/k of the masked positions, k steps left)."
)


def check_grid(grid: str) -> str:
    """`grid` if it names a grid, else `ValueError` naming the valid ones."""
    if grid not in GRIDS:
        raise ValueError(f"unknown sampling grid {grid!r}; valid: {', '.join(GRIDS)}")
    return grid


def equal_reveal_time(
    reverse: PositionSchedule,
    masked: Tensor,
    t: Tensor,
    steps_left: int,
    t_end: float = 0.0,
    iterations: int = 48,
) -> Tensor:
    """End s `[N]` of an equal-reveal step from t `[N]` with `steps_left` = k steps to go.

    reverse: the step's reverse schedule (`[N, n]` columns); masked: `[N, n]` bool.
    s ∈ [t_end, t] is the largest time with Σ_{masked} a_R(s, t) ≥ n / k (bisection in
    float64, `iterations` halvings of [t_end, t]); returned in t's dtype. k = 1 gives t_end.
    Rows with nothing masked step as the uniform grid would from t: s = t − (t − t_end)/k.
    """
    if steps_left < 1:
        raise ValueError(f"steps_left must be >= 1, got {steps_left}")
    t64 = t.to(torch.float64)
    lo = torch.full_like(t64, t_end)
    if steps_left == 1:
        return lo.to(t.dtype)
    target = masked.sum(-1).to(torch.float64) / steps_left  # [N]
    hi = t64.clone()
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        a_r = reverse.unmask_probability(mid, t64).to(torch.float64)  # [N, n]
        expected = torch.where(masked, a_r, torch.zeros_like(a_r)).sum(-1)
        ok = expected >= target
        lo, hi = torch.where(ok, mid, lo), torch.where(ok, hi, mid)
    idle = t64 - (t64 - t_end) / steps_left
    return torch.where(target > 0, lo, idle).to(t.dtype)


class StepGrid:
    """The T steps of a grid over [t_end, t_start] for `rows` states, in order.

    For step `index` (0 … T − 1; k = T − index steps left): `start(index)` is its time t
    `[rows]`, where the previous step ended; `end(index, reverse, masked)` its end s `[rows]`
    (the uniform grid ignores the state; equal-reveal reads it, see `equal_reveal_time`),
    which the next `start` returns. The uniform grid's times are exactly `time_grid`'s.
    """

    def __init__(
        self,
        grid: str,
        steps: int,
        rows: int,
        t_start: float = 1.0,
        t_end: float = 0.0,
        device: torch.device | str | None = None,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.grid, self.steps, self.rows = check_grid(grid), steps, rows
        self.t_start, self.t_end, self.device = t_start, t_end, device
        self._s: Tensor | None = None

    def _uniform(self, k: int) -> Tensor:
        width = self.t_start - self.t_end
        return torch.full((self.rows,), self.t_end + width * k / self.steps, device=self.device)

    def start(self, index: int) -> Tensor:
        """t `[rows]` of step `index`."""
        if self.grid == "uniform" or index == 0:
            return self._uniform(self.steps - index)
        if self._s is None:
            raise RuntimeError("StepGrid.start(index > 0) before end() of the previous step")
        return self._s

    def end(self, index: int, reverse: PositionSchedule, masked: Tensor, t: Tensor) -> Tensor:
        """s `[rows]` of step `index` from time t `[rows]` (as `start` gave) at the state
        whose masked positions are `masked: [rows, n]`, under its reverse schedule."""
        k = self.steps - index
        if self.grid == "uniform":
            self._s = self._uniform(k - 1)
        else:
            self._s = equal_reveal_time(reverse, masked, t, k, self.t_end)
        return self._s
