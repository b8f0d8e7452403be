"""The time proposal q(t) = ½·U(0, 1) + ½·law(U^k), k = 20, for importance sampling of t.

    L(x) = ∫_0^1 f(t) dt = ∫_0^1 f(Q⁻¹(u)) / q(Q⁻¹(u)) du,   Q the CDF of q.

Learned power-law schedules (α = 1 − t^w, LoMDM/GenMD4) make the NELBO integrand
w·t^{w−1}·E[CE], unbounded at t → 0 when w < 1: uniform t has infinite variance for w < ½.
Under q the weighted integrand is O(t^{w − 1/k}), bounded for w ≥ 1/k = 0.05 (LoMDM's smallest
exponent with the defaults). Used by the evaluation (always) and by the generic estimator's
`times: importance` option (training).
"""

from __future__ import annotations

import torch
from torch import Tensor

PROPOSAL_POWER = 20.0
SMALLEST_TIME = 1e-30  # float32-representable; below it the proposal's weight is ~0 anyway


def proposal_cdf(t: Tensor, power: float = PROPOSAL_POWER) -> Tensor:
    """Q(t) = ½·t + ½·t^{1/power}, the CDF of the time proposal (elementwise, float64)."""
    return 0.5 * t + 0.5 * t.pow(1.0 / power)


def proposal_density(t: Tensor, power: float = PROPOSAL_POWER) -> Tensor:
    """q(t) = ½ + ½·t^{1/power − 1}/power (elementwise, float64, t > 0)."""
    return 0.5 + 0.5 * t.pow(1.0 / power - 1.0) / power


def proposal_quantile(u: Tensor, power: float = PROPOSAL_POWER) -> Tensor:
    """Q⁻¹(u) for u ∈ [0, 1], float64. Solved for r = t^{1/power} (½·r^power + ½·r = u, by
    bisection), which keeps full relative precision for the tiny t near u = 0."""
    u = u.to(torch.float64)
    lo, hi = torch.zeros_like(u), torch.ones_like(u)
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        below = 0.5 * mid.pow(power) + 0.5 * mid < u
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (0.5 * (lo + hi)).pow(power)


def importance_times(u: Tensor) -> tuple[Tensor, Tensor]:
    """Map uniform `u` `[B]` in [0, 1] to times t = Q⁻¹(u) `[B]` (float32, ≥ SMALLEST_TIME) and
    their importance weights 1/q(t) `[B]` (float64): E_u[f(t)·weight] = ∫_0^1 f(t) dt."""
    t = proposal_quantile(u).clamp(SMALLEST_TIME, 1.0).float()
    return t, 1.0 / proposal_density(t.double())
