"""NELBO estimators: the generic Monte Carlo one (its math lives in `oemdm_core`) and the
structured ones, which `estimator: auto` prefers where the order and backbone allow:
`teacher-forcing` (ar + causal backbone) and `block-vectorized` (block + block-causal)."""

from __future__ import annotations

from oemdm_core import MonteCarloEstimator, Register, hookimpl
from oemdm_estimators.block_vectorized import BlockVectorized
from oemdm_estimators.teacher_forcing import TeacherForcing

__all__ = ["BlockVectorized", "TeacherForcing"]


@hookimpl
def register_estimators(register: Register) -> None:
    register(MonteCarloEstimator)
    register(TeacherForcing)
    register(BlockVectorized)
