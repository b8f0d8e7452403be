"""Registers the generic Monte Carlo NELBO estimator (its math lives in `oemdm_core`)."""

from __future__ import annotations

from oemdm_core import MonteCarloEstimator, hookimpl


@hookimpl
def register_estimators(register):
    register(MonteCarloEstimator)
