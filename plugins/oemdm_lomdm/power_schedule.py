"""`PowerSchedule`: α^i(t) = 1 − t^{w^i} with per-row, per-position exponents w (LoMDM, GenMD4).

With this family the velocity is w^i / t, the un-masking probability of a reverse step t → s
is 1 − (s/t)^{w^i}, and the order in which positions are generated in reverse time is
Plackett–Luce with weights w (the forward masking times are T_i = U_i^{1/w^i}; the last one
to be masked, i.e. the first generated, is i with probability w^i / Σ_j w^j).

Every method is safe at t = 0 (α = 1, velocity 0) and t = 1 (α = 0): no NaN in values or
gradients (guarded branches are computed on a harmless stand-in time).
"""

from __future__ import annotations

import torch
from torch import Tensor

from oemdm_core import PositionSchedule
from oemdm_core.interfaces import as_time_column


class PowerSchedule(PositionSchedule):
    """α^i(t) = 1 − t^{w^i} for exponents `w: [B, L]` (> 0; may carry gradients).

    Outputs are `[B, L]` in the promoted dtype of `w` and the times.
    """

    def __init__(self, w: Tensor) -> None:
        if w.dim() != 2:
            raise ValueError(f"exponents w must have shape [B, L], got {tuple(w.shape)}")
        self.w = w
        self.rows = w.shape[0]

    def repeat_rows(self, k: int) -> PowerSchedule:
        """Every row repeated `k` times in place: exponents `[B·k, L]`."""
        return self if k == 1 else PowerSchedule(self.w.repeat_interleave(k, 0))

    def _time(self, t: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
        """(column `[B, 1]` in the working dtype, t > 0 mask, safe t: 1 where t = 0)."""
        col = as_time_column(t, self.rows, self.w.device)
        col = col.to(torch.promote_types(col.dtype, self.w.dtype))
        positive = col > 0
        return col, positive, torch.where(positive, col, torch.ones_like(col))

    def one_minus_alpha(self, t: Tensor | float) -> Tensor:
        """t^w, `[B, L]` (0 at t = 0)."""
        _, positive, safe = self._time(t)
        power = torch.pow(safe, self.w)
        return torch.where(positive, power, torch.zeros_like(power))

    def alpha(self, t: Tensor | float) -> Tensor:
        """1 − t^w, `[B, L]`."""
        return 1.0 - self.one_minus_alpha(t)

    def velocity(self, t: Tensor | float) -> Tensor:
        """w / t, `[B, L]`; 0 at t = 0 (nothing can be masked there)."""
        _, positive, safe = self._time(t)
        v = self.w / safe
        return torch.where(positive, v, torch.zeros_like(v))

    def log_alpha(self, t: Tensor | float) -> Tensor:
        """log1p(−t^w), `[B, L]`; 0 at t = 0, −inf at t = 1."""
        col, positive, _ = self._time(t)
        interior = positive & (col < 1)
        mid = torch.where(interior, col, torch.full_like(col, 0.5))
        value = torch.log1p(-torch.pow(mid, self.w))
        value = torch.where(interior, value, torch.zeros_like(value))
        return torch.where(col >= 1, torch.full_like(value, float("-inf")), value)

    def log_one_minus_alpha(self, t: Tensor | float) -> Tensor:
        """w · log t, `[B, L]`; −inf at t = 0."""
        _, positive, safe = self._time(t)
        value = self.w * torch.log(safe)
        return torch.where(positive, value, torch.full_like(value, float("-inf")))

    def unmask_probability(self, s: Tensor | float, t: Tensor | float) -> Tensor:
        """1 − (s/t)^w = −expm1(w · log(s/t)), `[B, L]`; 1 at s = 0, 0 at t = 0."""
        _, t_pos, t_safe = self._time(t)
        _, s_pos, s_safe = self._time(s)
        ratio = (s_safe / t_safe).clamp(max=1.0)
        prob = -torch.expm1(self.w * torch.log(ratio))
        prob = torch.where(s_pos, prob, torch.ones_like(prob))
        return torch.where(t_pos, prob, torch.zeros_like(prob)).clamp(0.0, 1.0)
