"""Synthetic tasks with a known answer, and their exact denoiser (the `oracle` backbone)."""

from __future__ import annotations

from oemdm_core import Register, hookimpl
from oemdm_tasks.backbone import OracleBackbone
from oemdm_tasks.chains import TASKS, ChainTask, build_task, chain_table, lookup_chain
from oemdm_tasks.hmm import HiddenMarkovChain

__all__ = [
    "TASKS",
    "ChainTask",
    "HiddenMarkovChain",
    "OracleBackbone",
    "build_task",
    "chain_table",
    "lookup_chain",
]


@hookimpl
def register_backbones(register: Register) -> None:
    register(OracleBackbone)
