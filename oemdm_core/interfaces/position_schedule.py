"""Per-position schedules α^i(t): what `model.forward_schedule(x)` and
`model.reverse_schedule(z_t, t, out)` return.

A `PositionSchedule` answers any time: `alpha(t)`, `velocity(t)` and
`unmask_probability(s, t)` take times `t: [B]` (or a float, or a 0-d tensor, meaning the
same time for every row) and return `[B, L]`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from oemdm_core.interfaces.schedule import BaseSchedule


def as_time_column(
    t: Tensor | float, rows: int | None, device: torch.device | None = None
) -> Tensor:
    """Times as a `[B, 1]` column (float64 unless `t` already is a floating tensor).

    A float or 0-d tensor is broadcast to `rows` rows (1 if `rows` is None).
    """
    if not isinstance(t, Tensor):
        t = torch.tensor(float(t), dtype=torch.float64, device=device)
    if not t.is_floating_point():
        raise TypeError(f"times must be a floating tensor, got dtype {t.dtype}")
    if t.dim() == 0:
        t = t.expand(rows if rows is not None else 1)
    if t.dim() != 1:
        raise ValueError(f"times must have shape [B], got {tuple(t.shape)}")
    if rows is not None and t.shape[0] not in (rows, 1):
        raise ValueError(f"times must have shape [{rows}], got {tuple(t.shape)}")
    return t[:, None]


class PositionSchedule(ABC):
    """α^i(t) for a batch: a function of time only (the conditioning input is fixed inside).

    `rows` is the batch size B the schedule was built for, or None if it is the same for
    every row (fixed orders); then any number of times may be passed.
    """

    rows: int | None = None

    @abstractmethod
    def alpha(self, t: Tensor | float) -> Tensor:
        """α^i(t): `[B, L]`, probability that position i is still clean at time t."""

    @abstractmethod
    def velocity(self, t: Tensor | float) -> Tensor:
        """v^i(t) = -∂_t α^i / (1 - α^i): `[B, L]`, finite, ≥ 0; 0 where α^i = 1."""

    def one_minus_alpha(self, t: Tensor | float) -> Tensor:
        """1 - α^i(t), `[B, L]` (override for precision near α = 1)."""
        return 1.0 - self.alpha(t)

    def unmask_probability(self, s: Tensor | float, t: Tensor | float) -> Tensor:
        """Probability that a position masked at t is clean at s < t:
        (α(s) - α(t)) / (1 - α(t)), `[B, L]`; 0 where 1 - α(t) = 0."""
        masked_t = self.one_minus_alpha(t)
        masked_s = self.one_minus_alpha(s)
        safe = torch.where(masked_t > 0, masked_t, torch.ones_like(masked_t))
        prob = torch.where(masked_t > 0, 1.0 - masked_s / safe, torch.zeros_like(masked_t))
        return prob.clamp(0.0, 1.0)

    def log_alpha(self, t: Tensor | float) -> Tensor:
        """log α^i(t) (−inf where α = 0)."""
        return torch.log(self.alpha(t))

    def log_one_minus_alpha(self, t: Tensor | float) -> Tensor:
        """log(1 - α^i(t)) (−inf where α = 1)."""
        return torch.log(self.one_minus_alpha(t))

    def repeat_rows(self, k: int) -> PositionSchedule:
        """The schedule of the batch with every row repeated `k` times in place (rows
        b·k … b·k + k − 1 are row b), as for the K draws per sequence of a learned order.
        Schedules that do not depend on the row (`rows` None) are returned as they are;
        row-dependent schedules of learned orders with K > 1 implement it."""
        if self.rows is None or k == 1:
            return self
        raise NotImplementedError(
            f"{type(self).__name__} depends on the row but does not implement repeat_rows"
        )


class WindowedSchedule(PositionSchedule):
    """α^i(t) = α_b(clip((t - lo_i) / (hi_i - lo_i), 0, 1)): each position runs the base
    schedule inside its own time window `[lo_i, hi_i]` (mdm: [0, 1] everywhere; block and ar:
    one window per block). Does not depend on the data, so one object serves any batch.

    Args:
        base: the base schedule α_b.
        lo, hi: `[L]` window edges in [0, 1] with lo < hi.
    """

    def __init__(self, base: BaseSchedule, lo: Tensor, hi: Tensor) -> None:
        if lo.shape != hi.shape or lo.dim() != 1:
            raise ValueError(
                f"window edges must both have shape [L], got {tuple(lo.shape)} and {tuple(hi.shape)}"
            )
        if not bool((hi > lo).all()):
            raise ValueError("every window must have hi > lo")
        self.base = base
        self.lo = lo.to(torch.float64)
        self.hi = hi.to(torch.float64)

    def _tau(self, t: Tensor | float) -> tuple[Tensor, Tensor, torch.dtype]:
        col = as_time_column(t, None, self.lo.device)
        dtype = col.dtype
        col = col.to(torch.float64, copy=False)
        width = self.hi - self.lo  # [L]
        tau = ((col - self.lo) / width).clamp(0.0, 1.0)  # [B, L]
        return tau, width, dtype

    def alpha(self, t: Tensor | float) -> Tensor:
        tau, _, dtype = self._tau(t)
        return self.base.alpha(tau).to(dtype)

    def one_minus_alpha(self, t: Tensor | float) -> Tensor:
        tau, _, dtype = self._tau(t)
        return self.base.one_minus_alpha(tau).to(dtype)

    def velocity(self, t: Tensor | float) -> Tensor:
        # Chain rule: ∂_t α_b(τ) = α_b'(τ) / width inside the window, 0 outside it.
        # The window is (lo, hi]: at t = hi the position has just become fully masked and its
        # rate is the left limit, so on a shared edge exactly one window is active.
        col = as_time_column(t, None, self.lo.device).to(torch.float64)
        tau, width, dtype = self._tau(t)
        inside = (tau > 0) & (col <= self.hi)
        v = self.base.velocity(tau) / width
        return torch.where(inside, v, torch.zeros_like(v)).to(dtype)

    def unmask_probability(self, s: Tensor | float, t: Tensor | float) -> Tensor:
        tau_s, _, _ = self._tau(s)
        tau_t, _, dtype = self._tau(t)
        masked_t = self.base.one_minus_alpha(tau_t)
        masked_s = self.base.one_minus_alpha(tau_s)
        safe = torch.where(masked_t > 0, masked_t, torch.ones_like(masked_t))
        prob = torch.where(masked_t > 0, 1.0 - masked_s / safe, torch.zeros_like(masked_t))
        return prob.clamp(0.0, 1.0).to(dtype)


class SlicedSchedule(PositionSchedule):
    """Columns `[lo, hi)` of another `PositionSchedule` (a block's view of the sequence)."""

    def __init__(self, schedule: PositionSchedule, lo: int, hi: int) -> None:
        self.schedule, self.lo, self.hi = schedule, lo, hi
        self.rows = schedule.rows

    def alpha(self, t: Tensor | float) -> Tensor:
        return self.schedule.alpha(t)[:, self.lo : self.hi]

    def velocity(self, t: Tensor | float) -> Tensor:
        return self.schedule.velocity(t)[:, self.lo : self.hi]

    def one_minus_alpha(self, t: Tensor | float) -> Tensor:
        return self.schedule.one_minus_alpha(t)[:, self.lo : self.hi]

    def unmask_probability(self, s: Tensor | float, t: Tensor | float) -> Tensor:
        return self.schedule.unmask_probability(s, t)[:, self.lo : self.hi]


def block_windows(length: int, block_size: int) -> tuple[Tensor, Tensor]:
    """Time windows of the block order: block b = i // block_size owns
    [(nb-1-b)/nb, (nb-b)/nb], so block 0 is generated first (reverse time runs 1 → 0).

    Returns `lo, hi`, each `[L]` float64.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    if length % block_size != 0:
        raise ValueError(
            f"sequence length {length} is not divisible by block_size {block_size}; "
            f"use a block_size that divides {length}"
        )
    nb = length // block_size
    b = torch.arange(length, dtype=torch.float64) // block_size
    return (nb - 1 - b) / nb, (nb - b) / nb
