"""The `ar` order: left-to-right autoregression, the block order with block size 1."""

from __future__ import annotations

from oemdm_core import Order, WindowedSchedule, block_windows, hookimpl


class Autoregressive(Order):
    """Position i owns the window [(L−1−i)/L, (L−i)/L]; the NELBO equals the AR NLL."""

    name = "ar"

    def block_structure(self) -> int:
        return 1

    def forward_schedule(self, x, base, features=None):
        lo, hi = block_windows(x.shape[1], 1)
        return WindowedSchedule(base, lo.to(x.device), hi.to(x.device))


@hookimpl
def register_orders(register):
    register(Autoregressive)
