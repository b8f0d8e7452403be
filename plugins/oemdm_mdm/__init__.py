"""The `mdm` order: every position follows the base schedule (MDLM/MD4, random order)."""

from __future__ import annotations

import torch

from oemdm_core import Order, WindowedSchedule, hookimpl


class MaskedDiffusion(Order):
    """α^i(t) = α_b(t) for every position: masked diffusion, uniformly random order."""

    name = "mdm"

    def forward_schedule(self, x, base, features=None):
        length = x.shape[1]
        lo = torch.zeros(length, dtype=torch.float64, device=x.device)
        return WindowedSchedule(base, lo, torch.ones_like(lo))


@hookimpl
def register_orders(register):
    register(MaskedDiffusion)
