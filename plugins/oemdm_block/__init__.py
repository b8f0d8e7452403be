"""The `block` order: blocks left to right, random order inside a block (BD3-LM)."""

from __future__ import annotations

from pydantic import Field

from oemdm_core import Options, Order, WindowedSchedule, block_windows, hookimpl


class BlockOrder(Order):
    """Block b = i // block_size runs the base schedule inside the window
    [(nb−1−b)/nb, (nb−b)/nb]: block 0 is generated first."""

    name = "block"

    class Options(Options):
        block_size: int = Field(
            default=4, ge=1, description="Positions per block B' (must divide the length)."
        )

    def __init__(self, block_size: int = 4) -> None:
        super().__init__()
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.block_size = int(block_size)

    def check_length(self, length: int) -> None:
        if length % self.block_size != 0:
            raise ValueError(
                f"sequence length {length} is not divisible by block_size {self.block_size} "
                f"of order '{self.name}'; choose a block_size that divides {length}"
            )

    def block_structure(self) -> int:
        return self.block_size

    def forward_schedule(self, x, base, features=None):
        self.check_length(x.shape[1])
        lo, hi = block_windows(x.shape[1], self.block_size)
        return WindowedSchedule(base, lo.to(x.device), hi.to(x.device))


@hookimpl
def register_orders(register):
    register(BlockOrder)
