"""`teacher-forcing`: the exact NELBO of the `ar` order in one causal pass over the clean x.

For the left-to-right order (block structure 1), at any time inside position i's window the
positions before i are clean and position i is the only one with a nonzero velocity. A causal
backbone's logits at i read only the tokens before i, so the generic estimator's integrand
for position i is v^i(t)·CE^i with CE^i = −log p_θ(x^i | x_<i), whatever z_t looks like
elsewhere. Integrating over the window gives exactly CE^i: L(x) = Σ_i CE^i, the AR negative
log-likelihood, deterministic. The discrete bound L_T equals it too whenever T is a multiple
of L (every window then holds whole steps and each position is un-masked exactly once).
"""

from __future__ import annotations

import torch
from torch import Tensor

from oemdm_core import Estimator, MonteCarloEstimator, NELBOTerms
from oemdm_core.interfaces import DiffusionModel, cross_entropy, left_to_right_problems


def check_steps(steps: int | None) -> None:
    """Raise `ValueError` unless `steps` is None or an integer >= 1."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


class TeacherForcing(Estimator):
    """Σ_i −log p_θ(x^i | x_<i) from one causal pass: `[B]` nats per sequence, no randomness.

    Serves the `ar` order (block structure 1) with a causal backbone that ignores t.
    `t` is validated and otherwise ignored: the bound is returned exactly at every t, so
    any quadrature over t gives the exact value (`terms.t` is the given t, else 1: no time
    is drawn). `steps = T`: exact as well when T is a multiple of L; for other T the
    discrete bound differs from the AR NLL (a step can straddle two positions), so the call
    falls back to the generic Monte Carlo estimator (unbiased for L_T, random).
    """

    name = "teacher-forcing"
    auto_priority = 10

    def unsupported_reason(self, model: DiffusionModel) -> str | None:
        problems = left_to_right_problems(model.order, model.backbone)
        return "; ".join(problems) if problems else None

    def nelbo(
        self,
        model: DiffusionModel,
        x: Tensor,
        t: Tensor | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> NELBOTerms:
        model.check_tokens(x)
        check_steps(steps)
        batch, length = x.shape
        if steps is not None and steps % length != 0:
            return MonteCarloEstimator().nelbo(model, x, t=t, steps=steps, generator=generator)
        t = model.check_times(t, batch) if t is not None else torch.ones(batch, device=x.device)
        out = model.backbone(x, None)  # causal: logits at i read x_<i
        ce = cross_entropy(out.logits, x)  # [B, L] nats
        total = ce.sum(-1)
        return NELBOTerms(
            total=total,
            reconstruction=total,
            velocity_matching=torch.zeros_like(total),
            t=t,
            num_masked=torch.full((batch,), float(length), device=x.device),
        )
