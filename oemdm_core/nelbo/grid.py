"""The discrete-time bound L_T on a sampling grid, by simulating the forward chain backwards.

A sampler on a state-dependent grid (`equal-reveal`, `oemdm_core.interfaces.grids`) takes
steps t → s with s a function of the state z_t. The bound for that sampler is still an ELBO:
take the variational chain that starts at t = 1 with everything masked and, at each step,
computes s from (z_t, t, steps left) exactly as the sampler does, then draws z_s from the
forward posterior q(z_s | z_t, x) (each masked position un-masks to x^i with probability
a_F^i(s, t)). The model's reverse chain uses the same s, so the path KL is the sum of the
per-step KLs,

    L_T(x) = E_path Σ_steps Σ_{i masked} [ a_F^i·CE^i + KL_Bern(a_F^i ‖ a_R^i) ]

(DESIGN.md §2), and one simulated path gives an unbiased estimate with T denoiser calls per
sequence. On the uniform grid the chain's marginal at t_k is q(z_{t_k} | x), so it estimates
the same L_T as `model.nelbo(x, steps=T)` (one random step × T), with lower variance.
"""

from __future__ import annotations

import torch
from torch import Tensor

from oemdm_core.interfaces.draws import uniform
from oemdm_core.interfaces.grids import StepGrid
from oemdm_core.nelbo import terms as N


@torch.no_grad()
def discrete_nelbo_on_grid(
    model, x: Tensor, steps: int, grid: str = "uniform", generator: torch.Generator | None = None
) -> N.NELBOTerms:
    """One simulated path per sequence of the T-step bound L_T(x) on `grid`.

    x: `[B, L]` clean ids. Returns `NELBOTerms` with total, reconstruction (Σ a_F·CE) and
    velocity_matching (Σ KL_Bern(a_F ‖ a_R)), each `[B]` float32 nats per sequence, summed
    over the path's steps; `t` is the path's first time (1) and `num_masked` the number of
    masked positions at its start (L). Unbiased for L_T on that grid; the randomness is the
    path, drawn from `generator`.
    """
    model.check_tokens(x)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    batch, _ = x.shape
    forward = model.forward_schedule(x)
    z = torch.full_like(x, model.mask_id)
    walk = StepGrid(grid, steps, batch, device=x.device)
    reconstruction = torch.zeros(batch, device=x.device)
    matching = torch.zeros(batch, device=x.device)
    for index in range(steps):
        masked = z == model.mask_id
        if not bool(masked.any()):
            break  # nothing left to reveal: the remaining steps add 0
        t = walk.start(index)
        out = model.denoise(z, t)
        reverse = model.reverse_schedule(z, t, out)
        s = walk.end(index, reverse, masked, t)
        ce = N.cross_entropy(out.logits, x)
        rec, kl = N.discrete_step_terms(ce, masked, forward, reverse, s, t)
        reconstruction, matching = reconstruction + rec, matching + kl
        a_f = forward.unmask_probability(s, t).to(torch.float64)  # [B, L]
        reveal = masked & (uniform(tuple(z.shape), generator, z.device) < a_f)
        if index == steps - 1:
            reveal = masked  # s = 0: α_F(0) = 1, the chain ends at x
        z = torch.where(reveal, x, z)
    return N.NELBOTerms(
        total=reconstruction + matching,
        reconstruction=reconstruction,
        velocity_matching=matching,
        t=torch.ones(batch, device=x.device),
        num_masked=torch.full((batch,), float(x.shape[1]), device=x.device),
    )
