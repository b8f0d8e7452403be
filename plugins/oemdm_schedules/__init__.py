"""Base schedules: linear 1 − s, cosine cos(πs/2), polynomial 1 − s^p."""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor

from oemdm_core import BaseSchedule, Options, Register, hookimpl


class Linear(BaseSchedule):
    """α_b(s) = 1 − s (MDLM's linear schedule; velocity 1/s)."""

    name = "linear"

    def alpha(self, s: Tensor) -> Tensor:
        return 1.0 - s

    def one_minus_alpha(self, s: Tensor) -> Tensor:
        return s

    def dalpha(self, s: Tensor) -> Tensor:
        return torch.full_like(s, -1.0)


class Cosine(BaseSchedule):
    """α_b(s) = cos(πs/2)."""

    name = "cosine"

    def alpha(self, s: Tensor) -> Tensor:
        return torch.sin(0.5 * math.pi * (1.0 - s))  # = cos(πs/2), exactly 0 at s = 1

    def one_minus_alpha(self, s: Tensor) -> Tensor:
        return 2.0 * torch.sin(0.25 * math.pi * s) ** 2  # 1 − cos(2θ) = 2 sin²θ, exact near 0

    def dalpha(self, s: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * s)


# The exponents the NELBO estimators serve (docs/math.md, "Extreme polynomial schedules").
# Below ½ the integrand p·s^(p−1) has infinite variance under uniform training times and most
# of its mass below float32's smallest time (p = 0.01: ½ of it below s = 1e-30); above 10 the
# variance p²/(2p − 1) of one draw grows ~p/2 times that of the linear schedule.
P_RANGE = (0.5, 10.0)


class Polynomial(BaseSchedule):
    """α_b(s) = 1 − s^p, p ∈ [½, 10] (`P_RANGE`)."""

    name = "polynomial"

    class Options(Options):
        p: float = Field(
            default=2.0,
            ge=P_RANGE[0],
            le=P_RANGE[1],
            description=f"Exponent p ∈ [{P_RANGE[0]}, {P_RANGE[1]:g}] of α_b(s) = 1 − s^p.",
        )

    options: Options

    def alpha(self, s: Tensor) -> Tensor:
        return 1.0 - s**self.options.p

    def one_minus_alpha(self, s: Tensor) -> Tensor:
        return s**self.options.p

    def dalpha(self, s: Tensor) -> Tensor:
        p = self.options.p
        safe = torch.where(s > 0, s, torch.ones_like(s))
        # At s = 0 the derivative is unused: nothing is masked there, so the velocity is 0.
        return torch.where(s > 0, -p * safe ** (p - 1.0), torch.zeros_like(s))


@hookimpl
def register_schedules(register: Register) -> None:
    register(Linear)
    register(Cosine)
    register(Polynomial)
