"""`check_estimator`: an estimator is unbiased for the NELBO of every reference model it
serves, against exact enumeration (`oemdm_core.nelbo.exact`): for the continuous L(x) with
drawn times and with given times, and for the discrete L_T(x); its terms are `[B]`, finite,
non-negative and add up, and it is a function of its generator.

The models are `reference_models` of length 4 (the block order with block size 2), so that
the exact NELBO sums over the 2^4 masks; the estimator is checked on every model for which
`unsupported_reason` is None.
"""

from __future__ import annotations

import torch
from torch import Tensor

from oemdm_core.interfaces.estimator import Estimator
from oemdm_core.model.oemdm import OeMDM
from oemdm_core.nelbo.exact import exact_discrete_nelbo, exact_nelbo
from oemdm_core.plugin.registry import Registry, resolve_registry
from oemdm_core.testing.common import call, component_label, fail, rebuilt
from oemdm_core.testing.reference import REFERENCE_MODELS, reference_models

LENGTH = 4
STEPS = (4, 3)  # a multiple of L and of the block count, and one that is not
SIGMAS = 5.0  # a mean further than this many standard errors from the exact value fails


def estimator_models(registry: Registry) -> list[tuple[str, OeMDM]]:
    """The reference models of length 4 of the registered orders (block size 2)."""
    available = registry.available("order")
    configs = [
        ({"name": "block", "block_size": 2} if order == "block" else order, attention, timed)
        for order, attention, timed in REFERENCE_MODELS
        if order in available
    ]
    return reference_models(registry, configs=configs, length=LENGTH)


def check_estimator(
    estimator: Estimator,
    *,
    registry: Registry | None = None,
    models: list[tuple[str, OeMDM]] | None = None,
    calls: int = 64,
    rows: int = 64,
    seed: int = 0,
) -> None:
    """Check a built estimator on every model it serves (default: `estimator_models`):

    - `unsupported_reason(model)` is None or a non-empty string; some model is served;
    - `nelbo(model, x, t=None, steps=None, generator=g)` returns `NELBOTerms` whose total,
      reconstruction, velocity_matching, t and num_masked are finite `[B]` tensors, with
      reconstruction ≥ 0, velocity_matching ≥ 0 and total = reconstruction +
      velocity_matching (nats per sequence);
    - seeded determinism: the same generator seed gives the same terms, whatever the
      global RNG;
    - unbiased: over `calls` calls (seeds seed, seed + 1, …) on `rows` copies of each
      sequence, the mean total lies within 5 standard errors (plus 1e-4 relative) of the
      exact L(x); so does the mean at given times t on the midpoints of `rows` equal strata
      of (0, 1] (a quadrature over t is a quadrature of L); and with `steps` = 4 and 3, the
      mean against the exact L_T(x);
    - rebuilt from `get_options()` (through `registry`, default the global one), the same
      terms for the same seed.

    Runs without gradients. Raises `ConformanceError`.
    """
    registry = resolve_registry(registry)
    who = component_label(estimator)
    copy = rebuilt(who, estimator, registry)
    models = estimator_models(registry) if models is None else list(models)
    served = _served(who, estimator, models)
    with torch.no_grad():
        for label, model in served:
            x = torch.randint(
                0,
                model.vocab_size,
                (2, model.length),
                generator=torch.Generator().manual_seed(seed),
            )
            terms = _nelbo(who, estimator, label, model, x, seed=seed, noise=1)
            again = _nelbo(who, estimator, label, model, x, seed=seed, noise=2)
            if not _same(terms, again):
                prop = "seeded determinism (same generator seed, another global RNG state)"
                fail(who, prop, label, "the terms differ")
            if not _same(terms, _nelbo(who, copy, label, model, x, seed=seed, noise=1)):
                fail(who, "rebuilt from get_options(), the same terms", label, "they differ")
            _check_unbiased(who, estimator, label, model, x, calls, rows, seed)


def _served(who: str, estimator: Estimator, models) -> list[tuple[str, OeMDM]]:
    served, refusals = [], []
    for label, model in models:
        reason = call(who, f"unsupported_reason ({label})", estimator.unsupported_reason, model)
        if reason is not None and (not isinstance(reason, str) or not reason):
            prop = "unsupported_reason is None or a non-empty string"
            fail(who, prop, label, f"got {reason!r}")
        if reason is None:
            served.append((label, model))
        else:
            refusals.append(f"{label}: {reason}")
    if not served:
        detail = "unsupported_reason refused all; " + " | ".join(refusals[:3])
        fail(who, "serves a reference model", f"each of {len(models)} reference models", detail)
    return served


def _nelbo(who, estimator, label, model, x, seed, noise, t=None, steps=None):
    """One call with the global RNG set to `noise` (restored afterwards), checked."""
    where = label + ("" if steps is None else f", steps {steps}")
    where += "" if t is None else ", given t"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(noise)
        gen = torch.Generator().manual_seed(seed)
        terms = call(
            who, f"nelbo ({where})", estimator.nelbo, model, x, t=t, steps=steps, generator=gen
        )
    batch = x.shape[0]
    for name in ("total", "reconstruction", "velocity_matching", "t", "num_masked"):
        value = getattr(terms, name, None)
        if not isinstance(value, Tensor) or value.shape != (batch,):
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            fail(who, f"terms.{name} is a [B] tensor", where, f"got {got}, expected ({batch},)")
        if not torch.isfinite(value).all():
            fail(who, f"terms.{name} is finite", where, f"got {value.tolist()}")
    for name in ("reconstruction", "velocity_matching"):
        value = getattr(terms, name)
        if (value < -1e-6).any():
            fail(who, f"terms.{name} >= 0", where, f"got {value.tolist()}")
    parts = terms.reconstruction + terms.velocity_matching
    if not torch.allclose(terms.total, parts, rtol=1e-5, atol=1e-5):
        prop = "total = reconstruction + velocity_matching"
        fail(who, prop, where, f"{terms.total.tolist()} vs {parts.tolist()}")
    return terms


def _same(a, b) -> bool:
    names = ("total", "reconstruction", "velocity_matching", "t", "num_masked")
    return all(torch.equal(getattr(a, n), getattr(b, n)) for n in names)


def _check_unbiased(who, estimator, label, model, x, calls: int, rows: int, seed: int) -> None:
    """The mean of `calls` calls, each on `rows` copies of every sequence, against the
    exact value, three ways. Each call is one replicate: an estimator may spread its times
    over its batch (low-discrepancy), which correlates the rows of one call."""
    batch = x.shape[0]
    many = x.repeat(rows, 1)  # [rows·B, L]: row k·B + b is sequence b
    strata = (torch.arange(rows, dtype=torch.float64) + 0.5) / rows
    given = strata.repeat_interleave(batch).to(torch.float32)  # row k·B + b at stratum k

    def means(**kw) -> Tensor:  # [calls, B]: each call's mean per sequence
        return torch.stack(
            [
                _nelbo(who, estimator, label, model, many, seed=seed + c, noise=1, **kw)
                .total.to(torch.float64)
                .view(rows, batch)
                .mean(0)
                for c in range(calls)
            ]
        )

    edges = [k / model.length for k in range(model.length + 1)]
    exact = exact_nelbo(model, x, breakpoints=edges).total
    _compare(who, "unbiased: the mean over draws is L(x)", label, means(), exact)
    prop = "unbiased at given t: the mean over t on (0, 1] is L(x)"
    _compare(who, prop, label, means(t=given), exact)
    for steps in STEPS:
        exact_steps = exact_discrete_nelbo(model, x, steps).total
        prop = f"unbiased with steps={steps}: the mean over draws is L_T(x)"
        _compare(who, prop, label, means(steps=steps), exact_steps)


def _compare(who: str, prop: str, label: str, means: Tensor, exact: Tensor) -> None:
    """Per-call means `[calls, B]` against exact `[B]`, in standard errors of their mean."""
    mean = means.mean(0)
    error = means.std(0) / means.shape[0] ** 0.5
    allowed = SIGMAS * error + 1e-4 * (1.0 + exact.abs())
    bad = (mean - exact).abs() > allowed
    if bad.any():
        b = int(bad.nonzero()[0])
        detail = (
            f"sequence {b}: mean {float(mean[b]):.5f} ± {float(error[b]):.5f} (standard error), "
            f"exact {float(exact[b]):.5f} nats"
        )
        fail(who, prop, label, detail)


__all__ = ("check_estimator", "estimator_models")
