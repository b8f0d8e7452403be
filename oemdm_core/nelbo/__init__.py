"""The NELBO: its terms and estimators' building blocks (`terms`), exact enumeration on tiny
problems (`exact`), the importance proposal over times (`time_proposal`) and the generic
Monte Carlo estimator (`monte_carlo`). Built on the interfaces; no runtime, no CLI.

The names of `terms` are also names of this package (`oemdm_core.nelbo` was that module).
"""

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
    "discrete_step_terms",
    "leave_one_out_baseline",
    "log_forward_probability",
    "low_discrepancy_times",
    "score_function_surrogate",
    "velocity_bregman",
]
