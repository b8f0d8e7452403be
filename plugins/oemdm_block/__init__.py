"""The `block` order: blocks left to right, random order inside a block (BD3-LM)."""

from __future__ import annotations

from pydantic import Field
from torch import Tensor

import oemdm_core
from oemdm_core import Options, Order, Register, WindowedSchedule, block_windows, hookimpl
from oemdm_core.interfaces import BaseSchedule, PositionSchedule


class BlockOrder(Order):
    """Block b = i // block_size runs the base schedule inside the window
    [(nb−1−b)/nb, (nb−b)/nb]: block 0 is generated first."""

    name = "block"

    class Options(oemdm_core.Options):
        block_size: int = Field(
            default=4, ge=1, description="Positions per block B' (must divide the length)."
        )

    options: Options

    def check_length(self, length: int) -> None:
        size = self.options.block_size
        if length % size != 0:
            raise ValueError(
                f"sequence length {length} is not divisible by block_size {size} "
                f"of order '{self.name}'; choose a block_size that divides {length}"
            )

    def block_structure(self) -> int:
        return self.options.block_size

    def forward_schedule(
        self, x: Tensor, base: BaseSchedule, features: Tensor | None = None
    ) -> PositionSchedule:
        self.check_length(x.shape[1])
        lo, hi = block_windows(x.shape[1], self.options.block_size)
        return WindowedSchedule(base, lo.to(x.device), hi.to(x.device))


@hookimpl
def register_orders(register: Register) -> None:
    register(BlockOrder)
