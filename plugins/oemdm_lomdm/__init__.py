"""Learned generation orders: `lomdm` (context-dependent, LoMDM) and `genmd4` (token-keyed)."""

from __future__ import annotations

from oemdm_core import hookimpl
from oemdm_lomdm.genmd4 import GenMD4
from oemdm_lomdm.lomdm import LoMDM, norm_sig
from oemdm_lomdm.power_schedule import PowerSchedule

__all__ = ["GenMD4", "LoMDM", "PowerSchedule", "norm_sig"]


@hookimpl
def register_orders(register):
    register(LoMDM)
    register(GenMD4)
