"""The `genmd4` order: one learned exponent per vocabulary item (GenMD4's token-keyed schedule).

Forward: α^i(x, t) = 1 − t^{w[x^i]}, w = softplus(ρ) ∈ (0, ∞)^V, ρ a parameter of size V.
Trained with the same machinery as `lomdm` (`learned = True`: K draws per sequence, the
leave-one-out score-function term for ρ, the pathwise gradient through the velocities).

Reverse scheduler (our choice; the original release has none, so it cannot be sampled):

    ŵ^i(z_t) = 1 / Σ_v p_θ(v | z_t)_i / w[v]        (a harmonic mean under the denoiser)

Why: in reverse time a masked position i un-masks at rate w[x^i]/t, so the true reverse rate
given z_t is E[w[x^i] | z_t]/t, the posterior mean of w. The NELBO's reconstruction term is
weighted by the forward velocity w[x^i]/t, so the denoiser that minimises it is the
w-tilted posterior p_θ(v) ∝ w[v]·P(x^i = v | z_t), not the posterior itself; under that p_θ,
E_post[w] = 1 / E_{p_θ}[1/w]. So at the optimal denoiser this reverse rate is exact and the
velocity-matching term vanishes; no extra network is needed, only the logits at z_t that
the denoiser call already produced (`needs_logits`). Unmasked positions get w[z_t^i].
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from oemdm_core.interfaces import Backbone, BaseSchedule, DenoiserOutput, PositionSchedule
from oemdm_lomdm.power_schedule import PowerSchedule
from oemdm_lomdm.training_options import LearnedOrder, LearnedOrderOptions


class GenMD4(LearnedOrder):
    """Token-keyed learned schedule α^i = 1 − t^{w[x^i]} with a sampleable reverse scheduler."""

    name = "genmd4"
    needs_logits = True

    class Options(LearnedOrderOptions):
        init: float = Field(
            default=1.0, gt=0, description="Initial exponent of every token (1 = linear MDLM)."
        )

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.rho: nn.Parameter | None = None

    def bind(self, backbone: Backbone) -> None:
        """Create ρ, one entry per vocabulary item of `backbone`."""
        if self.rho is not None:
            return
        init = self.options.init
        inverse_softplus = init + math.log(-math.expm1(-init))
        self.rho = nn.Parameter(torch.full((backbone.vocab_size,), inverse_softplus))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """ρ, the token-keyed forward exponents (the reverse scheduler has no parameters)."""
        return {"forward_scheduler": [self.rho] if self.rho is not None else []}

    def weights(self) -> Tensor:
        """The exponents w = softplus(ρ): `[V]`, > 0."""
        if self.rho is None:
            raise RuntimeError(
                "genmd4 order is not bound to a backbone; build it inside OeMDM (which calls bind)"
            )
        return F.softplus(self.rho)

    def forward_schedule(
        self, x: Tensor, base: BaseSchedule, features: Tensor | None = None
    ) -> PowerSchedule:
        """α_F^i(x, t) = 1 − t^{w[x^i]} for clean `x: [B, L]`."""
        return PowerSchedule(self.weights()[x])

    def generation_weights(
        self, x: Tensor, base: BaseSchedule, features: Tensor | None = None
    ) -> Tensor:
        """The forward exponents w[x^i] `[B, L]` (Plackett–Luce weights of the order)."""
        return self.weights()[x]

    def reverse_schedule(
        self, z_t: Tensor, t: Tensor, base: BaseSchedule, out: DenoiserOutput | None = None
    ) -> PositionSchedule:
        """α_R^i(z_t, s) = 1 − s^{ŵ^i}, ŵ^i = 1 / Σ_v p_θ(v|z_t)_i / w[v] at masked positions.

        out: the denoiser output at z_t (OeMDM passes it); reads `out.logits [B, L, V]`."""
        if out is None:
            raise ValueError(
                "genmd4's reverse scheduler reads the denoiser logits at z_t ([B, L, V]); "
                "call it through OeMDM.reverse_schedule, which supplies them"
            )
        w = self.weights()  # [V]
        logits = out.logits.detach() if self.options.stop_gradient else out.logits
        probs = torch.softmax(logits.float(), dim=-1)  # [B, L, V]
        w_hat = 1.0 / (probs @ (1.0 / w))  # [B, L]
        vocab = w.shape[0]
        clean = z_t < vocab
        w_clean = w[z_t.clamp(max=vocab - 1)]
        return PowerSchedule(torch.where(clean, w_clean, w_hat))
