"""A right-to-left generation order for oemdm: the `ar` windows, mirrored."""

from __future__ import annotations

from pydantic import Field

from oemdm_core import Options, Order, WindowedSchedule, block_windows, hookimpl


class RightToLeft(Order):
    """Blocks right to left: the last position (or block) is generated first."""

    name = "rtl"

    class Options(Options):
        block_size: int = Field(
            default=1, ge=1, description="Positions per block (1: one at a time)."
        )

    def check_length(self, length: int) -> None:
        # block_windows raises ValueError if block_size does not divide the length.
        block_windows(length, self.options.block_size)

    def forward_schedule(self, x, base, features=None):
        lo, hi = block_windows(x.shape[1], self.options.block_size)  # [L] each, block 0 first
        return WindowedSchedule(base, lo.flip(0).to(x.device), hi.flip(0).to(x.device))


@hookimpl
def register_orders(register):
    register(RightToLeft)
