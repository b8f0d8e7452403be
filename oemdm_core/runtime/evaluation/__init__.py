"""Evaluation: the NELBO over a split (`likelihood`), zero-shot likelihoods on other data,
exact likelihoods of deterministic orders, and the quality of samples (generative
perplexity under a judge and the statistics of `sample_metrics`)."""

from oemdm_core.runtime.evaluation.likelihood import EvalResult, evaluate

__all__ = ["EvalResult", "evaluate"]
