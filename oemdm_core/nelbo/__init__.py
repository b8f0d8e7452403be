"""The NELBO: its terms and estimators' building blocks (`terms`), exact enumeration on tiny
problems (`exact`), the importance proposal over times (`time_proposal`) and the generic
Monte Carlo estimator (`monte_carlo`). Built on the interfaces; no runtime, no CLI."""

from oemdm_core.nelbo.terms import NELBOTerms

__all__ = ["NELBOTerms"]
