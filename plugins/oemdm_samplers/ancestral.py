"""Ancestral sampling of the reverse process on a grid of T steps."""

from __future__ import annotations

import torch
from pydantic import Field

from oemdm_core import Options, Sampler, SampleResult
from oemdm_core.sampler import initial_state
from oemdm_core.sampling import sample_tokens


class AncestralSampler(Sampler):
    """T steps t_k = k/T → t_{k−1}: each masked position is un-masked with the reverse
    schedule's probability (α_R(s) − α_R(t)) / (1 − α_R(t)) and draws its token from p_θ.

    When no position changed in a step and the backbone ignores t, the previous denoiser
    output is reused (one network call per distinct state).
    """

    name = "ancestral"

    class Options(Options):
        steps: int = Field(default=64, ge=1, description="Number of reverse steps T.")
        temperature: float = Field(
            default=1.0, ge=0.0, description="Softmax temperature (0 = argmax)."
        )
        top_p: float = Field(
            default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass in (0, 1]."
        )
        cache: bool = Field(
            default=True, description="Reuse the denoiser output when the state is unchanged."
        )

    def __init__(
        self, steps: int = 64, temperature: float = 1.0, top_p: float = 1.0, cache: bool = True
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
        self.steps, self.temperature, self.top_p, self.cache = steps, temperature, top_p, cache

    @torch.no_grad()
    def sample(self, model, num_samples, length=None, generator=None, fixed=None):
        length = model.length if length is None else length
        z, keep = initial_state(model, num_samples, length, fixed)
        order = torch.where(keep, -1, length + self.steps).to(
            torch.long
        )  # placeholder: not yet un-masked
        reuse = self.cache and not model.backbone.uses_time
        out, nfe, changed = None, 0, True
        source = generator.device if generator is not None else z.device
        for step, k in enumerate(range(self.steps, 0, -1)):
            t = torch.full((num_samples,), k / self.steps, device=z.device)
            s = torch.full((num_samples,), (k - 1) / self.steps, device=z.device)
            masked = z == model.mask_id
            if not bool(masked.any()):
                break
            if out is None or changed or not reuse:
                out = model.denoise(z, t)
                nfe += 1
            reverse = model.reverse_schedule(z, t, out)
            prob = reverse.unmask_probability(s, t).to(torch.float64)  # [N, L]
            u = torch.rand(z.shape, generator=generator, dtype=torch.float64, device=source).to(
                z.device
            )
            reveal = masked & (u < prob)
            if k == 1:
                reveal = masked  # α(0) = 1: everything is clean at t = 0
            tokens = sample_tokens(out.logits, generator, self.temperature, self.top_p)
            z = torch.where(reveal, tokens, z)
            order = torch.where(reveal, step, order)
            changed = bool(reveal.any())
        return SampleResult(tokens=z, order=order, nfe=nfe)
