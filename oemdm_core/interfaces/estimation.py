"""What every NELBO estimator draws and scores: the times t (low-discrepancy), the step
(s, t) of a T-step grid, z_t ~ q(· | x), and the per-position cross-entropy.

`oemdm_core.nelbo.terms` (the integrands) and the estimators of plugins build on these.
"""

from __future__ import annotations

import torch
from torch import Tensor


def low_discrepancy_times(
    batch: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> Tensor:
    """Stratified times t_b = 1 − ((u + b/B) mod 1), u ~ U[0, 1): `[B]` in (0, 1].

    Each t_b is marginally uniform, and the batch covers [0, 1] evenly (VDM/MDLM).
    """
    source = generator.device if generator is not None else device
    u = torch.rand((), generator=generator, dtype=torch.float64, device=source).to(device)
    offsets = torch.arange(batch, dtype=torch.float64, device=device) / batch
    return (1.0 - torch.remainder(u + offsets, 1.0)).to(torch.float32)


def discrete_times(t: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Round times up to the grid k/T: returns (s, t) = ((k−1)/T, k/T), each `[B]`, k ≥ 1."""
    k = torch.ceil(t.to(torch.float64) * steps).clamp(1, steps)
    return ((k - 1) / steps).to(t.dtype), (k / steps).to(t.dtype)


def corrupt(
    x: Tensor, alpha: Tensor, mask_id: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Draw z_t ~ q(· | x): position i stays x^i with probability α^i, else becomes the mask.

    x: `[B, L]` ids; alpha: `[B, L]`. Returns z_t `[B, L]` and the mask indicator `[B, L]` bool.
    """
    source = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, dtype=torch.float64, device=source).to(x.device)
    masked = u >= alpha.detach().to(torch.float64)
    return torch.where(masked, torch.full_like(x, mask_id), x), masked


def cross_entropy(logits: Tensor, x: Tensor) -> Tensor:
    """−log p_θ(x^i | z_t) per position: `[B, L]` float32 from logits `[B, L, V]`."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -logp.gather(-1, x.unsqueeze(-1)).squeeze(-1)
