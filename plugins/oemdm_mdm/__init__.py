"""The `mdm` order: every position follows the base schedule (MDLM/MD4, random order)."""

from __future__ import annotations

import torch
from torch import Tensor

from oemdm_core import Order, Register, WindowedSchedule, hookimpl
from oemdm_core.interfaces import BaseSchedule, PositionSchedule


class MaskedDiffusion(Order):
    """α^i(t) = α_b(t) for every position: masked diffusion, uniformly random order."""

    name = "mdm"

    def forward_schedule(
        self, x: Tensor, base: BaseSchedule, features: Tensor | None = None
    ) -> PositionSchedule:
        length = x.shape[1]
        lo = torch.zeros(length, dtype=torch.float64, device=x.device)
        return WindowedSchedule(base, lo, torch.ones_like(lo))


@hookimpl
def register_orders(register: Register) -> None:
    register(MaskedDiffusion)
