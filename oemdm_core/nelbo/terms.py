"""The OeMDM NELBO: the per-draw integrands and the score-function surrogate.

All quantities are in nats per sequence. Notation as in docs/math.md:
continuous time  Σ_{i masked} [ v_F^i·CE^i + (v_R^i − v_F^i − v_F^i·log(v_R^i / v_F^i)) ],
discrete time    T · Σ_{i masked} [ a_F^i·CE^i + KL_Bern(a_F^i ‖ a_R^i) ]   (one of T steps).
"""

from __future__ import annotations

import torch
from torch import Tensor

from oemdm_core.interfaces.estimation import corrupt, cross_entropy, low_discrepancy_times
from oemdm_core.interfaces.estimator import NELBOTerms
from oemdm_core.interfaces.position_schedule import PositionSchedule

# `NELBOTerms` and the draws (`oemdm_core.interfaces`) were defined here; they are still
# names of this module.
__all__ = [
    "NELBOTerms",
    "bernoulli_kl",
    "continuous_integrand",
    "corrupt",
    "cross_entropy",
    "discrete_step_terms",
    "leave_one_out_baseline",
    "log_forward_probability",
    "low_discrepancy_times",
    "score_function_surrogate",
    "velocity_bregman",
]


def velocity_bregman(v_reverse: Tensor, v_forward: Tensor) -> Tensor:
    """v_R − v_F − v_F·log(v_R / v_F), elementwise, ≥ 0, = 0 iff v_R = v_F (0·log 0 = 0).

    Computed as v_F·(d − log1p(d)) with d = v_R/v_F − 1, which stays ≥ 0 after rounding
    (the expanded form can come out slightly negative when v_R ≈ v_F); v_R where v_F = 0.
    """
    positive = v_forward > 0
    safe = torch.where(positive, v_forward, torch.ones_like(v_forward))
    d = v_reverse / safe - 1.0
    return torch.where(positive, safe * (d - torch.log1p(d)), v_reverse)


def bernoulli_kl(a: Tensor, b: Tensor) -> Tensor:
    """KL(Bern(a) ‖ Bern(b)), elementwise (0·log 0 = 0)."""
    return (
        torch.xlogy(a, a)
        - torch.xlogy(a, b)
        + torch.xlogy(1.0 - a, 1.0 - a)
        - torch.xlogy(1.0 - a, 1.0 - b)
    )


def continuous_integrand(
    ce: Tensor, masked: Tensor, forward: PositionSchedule, reverse: PositionSchedule, t: Tensor
) -> tuple[Tensor, Tensor]:
    """Reconstruction and velocity-matching integrands at time t for one draw of z_t.

    ce, masked: `[B, L]`; t: `[B]`. Returns two `[B]` tensors (nats per sequence per unit time).
    """
    v_f = forward.velocity(t).to(ce.dtype)
    reconstruction = torch.where(masked, v_f * ce, torch.zeros_like(ce)).sum(-1)
    if reverse is forward:
        return reconstruction, torch.zeros_like(reconstruction)
    v_r = reverse.velocity(t).to(ce.dtype)
    matching = torch.where(masked, velocity_bregman(v_r, v_f), torch.zeros_like(ce)).sum(-1)
    return reconstruction, matching


def discrete_step_terms(
    ce: Tensor,
    masked: Tensor,
    forward: PositionSchedule,
    reverse: PositionSchedule,
    s: Tensor,
    t: Tensor,
) -> tuple[Tensor, Tensor]:
    """Reconstruction and KL terms of the reverse step t → s < t for one draw of z_t.

    Returns two `[B]` tensors (nats per sequence, for this one step).
    """
    a_f = forward.unmask_probability(s, t).to(ce.dtype)
    reconstruction = torch.where(masked, a_f * ce, torch.zeros_like(ce)).sum(-1)
    if reverse is forward:
        return reconstruction, torch.zeros_like(reconstruction)
    a_r = reverse.unmask_probability(s, t).to(ce.dtype)
    kl = torch.where(masked, bernoulli_kl(a_f, a_r), torch.zeros_like(ce)).sum(-1)
    return reconstruction, kl


def log_forward_probability(forward: PositionSchedule, masked: Tensor, t: Tensor) -> Tensor:
    """log q(z_t | x) = Σ_i [masked·log(1 − α^i) + clean·log α^i]: `[B]`."""
    log_masked = forward.log_one_minus_alpha(t)
    log_clean = forward.log_alpha(t)
    zeros = torch.zeros_like(log_clean)
    return torch.where(masked, log_masked, zeros).sum(-1) + torch.where(
        masked, zeros, log_clean
    ).sum(-1)


def leave_one_out_baseline(values: Tensor, draws: int) -> Tensor:
    """Baseline for the score-function estimator, detached: `[B·K]` from `values: [B·K]`.

    Rows are grouped as K consecutive draws of the same sequence; each gets the mean of the
    other K − 1 draws. With K = 1 the other sequences of the batch serve instead (0 if B = 1).
    """
    values = values.detach()
    if draws > 1:
        grouped = values.view(-1, draws)
        return ((grouped.sum(-1, keepdim=True) - grouped) / (draws - 1)).reshape(-1)
    n = values.shape[0]
    if n == 1:
        return torch.zeros_like(values)
    return (values.sum() - values) / (n - 1)


def score_function_surrogate(values: Tensor, log_q: Tensor, baseline: Tensor) -> Tensor:
    """values + stopgrad(values − baseline)·(log_q − stopgrad(log_q)).

    Same value as `values`; its gradient adds (f − b)·∇log q_φ(z_t | x), the score-function
    part of ∇E_q[f] (the pathwise part flows through `values` itself).
    """
    return values + (values - baseline).detach() * (log_q - log_q.detach())
