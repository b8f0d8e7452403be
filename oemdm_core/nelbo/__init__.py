"""The NELBO: its terms and estimators' building blocks (`terms`), exact enumeration on tiny
problems (`exact`), the importance proposal over times (`time_proposal`), the generic
Monte Carlo estimator (`monte_carlo`) and L_T on a sampling grid by simulated paths
(`grid`). Built on the interfaces; no runtime, no CLI.

The names of `terms` are also names of this package (`oemdm_core.nelbo` was that module).
"""

from oemdm_core.nelbo.grid import discrete_nelbo_on_grid
from oemdm_core.nelbo.terms import (
    NELBOTerms,
    bernoulli_kl,
    continuous_integrand,
    corrupt,
    cross_entropy,
    discrete_step_terms,
    leave_one_out_baseline,
    log_forward_probability,
    low_discrepancy_times,
    score_function_surrogate,
    velocity_bregman,
)

__all__ = [
    "NELBOTerms",
    "bernoulli_kl",
    "continuous_integrand",
    "corrupt",
    "cross_entropy",
    "discrete_nelbo_on_grid",
    "discrete_step_terms",
    "leave_one_out_baseline",
    "log_forward_probability",
    "low_discrepancy_times",
    "score_function_surrogate",
    "velocity_bregman",
]
