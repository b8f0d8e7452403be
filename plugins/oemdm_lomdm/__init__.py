"""Learned generation orders: `lomdm` (context-dependent, LoMDM), `genmd4` (token-keyed) and
`positional` (one free exponent per position)."""

from __future__ import annotations

from oemdm_core import Register, hookimpl
from oemdm_lomdm.genmd4 import GenMD4
from oemdm_lomdm.lomdm import LoMDM, norm_sig
from oemdm_lomdm.positional import PositionalOrder
from oemdm_lomdm.power_schedule import PowerSchedule

__all__ = ["GenMD4", "LoMDM", "PositionalOrder", "PowerSchedule", "norm_sig"]


@hookimpl
def register_orders(register: Register) -> None:
    register(LoMDM)
    register(GenMD4)
    register(PositionalOrder)
