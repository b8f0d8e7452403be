"""The `ar` order: left-to-right autoregression, the block order with block size 1."""

from __future__ import annotations

from torch import Tensor

from oemdm_core import Order, Register, WindowedSchedule, block_windows, hookimpl
from oemdm_core.interfaces import BaseSchedule, PositionSchedule


class Autoregressive(Order):
    """Position i owns the window [(L−1−i)/L, (L−i)/L]; the NELBO equals the AR NLL."""

    name = "ar"

    def block_structure(self) -> int:
        return 1

    def forward_schedule(
        self, x: Tensor, base: BaseSchedule, features: Tensor | None = None
    ) -> PositionSchedule:
        lo, hi = block_windows(x.shape[1], 1)
        return WindowedSchedule(base, lo.to(x.device), hi.to(x.device))


@hookimpl
def register_orders(register: Register) -> None:
    register(Autoregressive)
