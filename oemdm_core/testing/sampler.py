"""`check_sampler`: a built sampler keeps the `SampleResult` convention, is a function of
its generator, keeps the caller's fixed positions, when it declares `has_cache` gives the
same samples with and without its cache, and when it declares `reports_steps` hands every
step to a callback, in agreement with the order it returns.

The models come from `reference_models` (the reference backbone under the configurations
of `REFERENCE_MODELS`: mdm, ar and block orders; bidirectional, causal and block-causal
attention; time-free and time-conditioned), or from the caller. The sampler is checked on
every model its `check_model` accepts (a `ValueError` there means "cannot serve").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from oemdm_core.interfaces.sampler import Sampler, SampleResult
from oemdm_core.interfaces.segment import StepInfo
from oemdm_core.model.oemdm import OeMDM
from oemdm_core.plugin.registry import Registry, resolve_registry
from oemdm_core.testing.common import call, component_label, fail, rebuilt
from oemdm_core.testing.reference import reference_models

Models = Sequence[tuple[str, OeMDM]]


def check_sampler(
    sampler: Sampler | type[Sampler],
    *,
    registry: Registry | None = None,
    models: Sequence[tuple[str, OeMDM]] | None = None,
    num_samples: int = 3,
    seed: int = 0,
) -> None:
    """Check a sampler (an instance, or a class built with its default options) on every
    model its `check_model` accepts:

    - tokens `[N, L]` long in [0, V); order `[N, L]` long, −1 exactly at the positions the
      caller fixed (and the padding after `lengths`), ≥ 0 at every generated one, and not 0
      everywhere when `nfe` > 1 (a run of several denoiser calls that generated everything
      in its first step numbers its steps wrongly); `nfe` an int ≥ 1; `lengths` None or
      `[N]` in [0, L];
    - fixed positions kept: a `[L]` prefix and a per-row `[N, L]` infilling pattern;
    - seeded determinism: two runs from `torch.Generator().manual_seed(seed)` give the same
      tokens, order, nfe and lengths, whatever the global RNG;
    - `has_cache`: rebuilt from its options with the other value of `cache`, the same
      tokens, order and lengths, on the models whose backbone ignores t;
    - `reports_steps`: with `callback=`, the same result, and the callback called with
      `StepInfo`s of steps 0, 1, …, S−1 (t, s `[N]`; state `[N, L]` long; revealed `[N, L]`
      bool), each generated position revealed at the step `order` gives it and holding a
      token there, the last state equal to the tokens;
    - rebuilt from `get_options()`, the same samples on the first model it serves.

    registry: builds the reference models and rebuilds the sampler (default: the global
    one). models: (label, `OeMDM`) pairs to try (default: `reference_models(registry)`).
    Raises `ConformanceError`; also when the sampler serves none of the models.
    """
    registry = resolve_registry(registry)
    if isinstance(sampler, type):  # a class: build it with its default options
        sampler = sampler.from_options(sampler.validate_options(), registry=registry)
    who = component_label(sampler)
    models = reference_models(registry) if models is None else list(models)
    other, compared, first = None, 0, None
    if type(sampler).has_cache:  # the declared boolean option `cache`, flipped
        cache = sampler.get_options().get("cache")
        if not isinstance(cache, bool):
            fail(who, "has_cache: a boolean option 'cache'", "get_options()", f"cache={cache!r}")
        other = _rebuild(who, sampler, not cache, registry)
    for label, model in _served(who, sampler, models):
        n, length, vocab = num_samples, model.length, model.vocab_size
        prefix, infill = _fixed_patterns(n, length, vocab, seed)
        for fixed in (None, prefix, infill):
            result = _sample(who, sampler, label, model, n, seed, fixed, noise=1)
            _check_result(who, result, label, n, length, vocab, fixed)
        again = _sample(who, sampler, label, model, n, seed, infill, noise=2)
        difference = _difference(result, again, with_nfe=True)
        if difference:
            prop = "seeded determinism (same generator seed, another global RNG state)"
            fail(who, prop, f"{label}, fixed {infill.tolist()}", difference)
        if other is not None and not model.backbone.uses_time and _accepts(other, model):
            compared += 1
            flipped = _sample(who, other, label, model, n, seed, infill, noise=1)
            difference = _difference(result, flipped, with_nfe=False)
            if difference:
                prop = "has_cache: cache=True gives the samples of cache=False"
                fail(who, prop, f"{label}, fixed {infill.tolist()}", difference)
        if type(sampler).reports_steps:
            _check_steps(who, sampler, label, model, seed, infill, result)
        first = first or (label, model, infill, result)
    if other is not None and not compared:
        detail = (
            f"no model whose backbone ignores t is served both with cache={cache} and "
            f"cache={not cache}"
        )
        fail(who, "has_cache: cache=True gives the samples of cache=False", "the models", detail)
    if first is not None:  # always: `_served` fails when no model is served
        label, model, infill, result = first
        copy = rebuilt(who, sampler, registry)
        again = _sample(who, copy, label, model, num_samples, seed, infill, noise=1)
        difference = _difference(result, again, with_nfe=True)
        if difference:
            fail(who, "rebuilt from get_options(), the same samples", label, difference)


def _served(who: str, sampler: Sampler, models: Models) -> list[tuple[str, OeMDM]]:
    """The models `sampler.check_model` accepts; fails when there is none."""
    served, refusals = [], []
    for label, model in models:
        try:
            sampler.check_model(model, model.length)
        except ValueError as exc:
            refusals.append(f"{label}: {exc}")
            continue
        except Exception as exc:
            fail(
                who,
                "check_model raises ValueError or accepts",
                label,
                f"{type(exc).__name__}: {exc}",
            )
        served.append((label, model))
    if not served:
        fail(
            who,
            "serves a reference model",
            f"each of {len(models)} reference models",
            "check_model refused all; " + " | ".join(refusals[:3]),
        )
    return served


def _sample(
    who: str, sampler, label, model, n, seed, fixed=None, noise=0, **callback
) -> SampleResult:
    """One seeded run, with the global RNG set to `noise` (and restored afterwards)."""
    where = label if fixed is None else f"{label}, fixed {fixed.tolist()}"
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(noise)
        gen = torch.Generator().manual_seed(seed)
        args = (sampler.sample, model, n, model.length, gen, fixed)
        result = call(who, f"sample ({where})", *args, **callback)
    if not isinstance(result, SampleResult):
        fail(who, "sample returns a SampleResult", where, f"got {type(result).__name__}")
    return result


def _fixed_patterns(n: int, length: int, vocab_size: int, seed: int) -> list[Tensor]:
    """A `[L]` prefix (the first half) and an `[N, L]` infilling pattern that differs per
    row; every row keeps at least one position to generate."""
    gen = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, vocab_size, (n, length), generator=gen)
    prefix = torch.where(torch.arange(length) < length // 2, ids[0], -1)
    rows, cols = torch.arange(n)[:, None], torch.arange(length)[None, :]
    infill = torch.where((rows + cols) % 3 == 0, ids, -1)
    return [prefix, infill]


def _check_result(who, result, label, n, length, vocab, fixed: Tensor | None) -> None:
    where = label if fixed is None else f"{label}, fixed {fixed.tolist()}"
    tokens, order, nfe, lengths = result.tokens, result.order, result.nfe, result.lengths
    for name, value in (("tokens", tokens), ("order", order)):
        if not isinstance(value, Tensor) or value.shape != (n, length) or value.dtype != torch.long:
            got = (
                f"{type(value).__name__} {tuple(value.shape)} {value.dtype}"
                if isinstance(value, Tensor)
                else type(value).__name__
            )
            fail(
                who, f"{name} is a [N, L] long tensor", where, f"got {got}, expected {(n, length)}"
            )
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab:
        bad = ((tokens < 0) | (tokens >= vocab)).nonzero()[0].tolist()
        fail(who, f"tokens in [0, {vocab})", where, f"token {int(tokens[tuple(bad)])} at {bad}")
    if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
        fail(who, "nfe is an int >= 1", where, f"got {nfe!r}")
    valid = torch.ones_like(tokens, dtype=torch.bool)
    if lengths is not None:
        if not isinstance(lengths, Tensor) or lengths.shape != (n,) or lengths.dtype != torch.long:
            fail(who, "lengths is None or a [N] long tensor", where, f"got {lengths!r}")
        if int(lengths.min()) < 0 or int(lengths.max()) > length:
            fail(who, f"lengths in [0, {length}]", where, f"got {lengths.tolist()}")
        valid = torch.arange(length)[None, :] < lengths[:, None]
    keep = torch.zeros_like(valid)
    if fixed is not None:
        fixed = fixed.expand(n, -1)
        keep = fixed >= 0
        changed = keep & valid & (tokens != fixed)
        if changed.any():
            at = changed.nonzero()[0].tolist()
            detail = f"position {at} holds {int(tokens[tuple(at)])}, fixed {int(fixed[tuple(at)])}"
            fail(who, "fixed positions are kept", where, detail)
    generated = valid & ~keep
    wrong = (generated & (order < 0)) | (~generated & (order != -1))
    if wrong.any():
        at = wrong.nonzero()[0].tolist()
        what = "generated" if generated[tuple(at)] else "fixed by the caller or padding"
        detail = f"position {at} ({what}) has order {int(order[tuple(at)])}"
        fail(who, "order is −1 exactly at fixed positions and ≥ 0 at generated ones", where, detail)
    if nfe > 1 and generated.sum() > 1 and bool((order[generated] == 0).all()):
        detail = f"nfe {nfe}, but every generated position has order 0 (step 0)"
        fail(who, "order numbers the steps (not all 0 after several denoiser calls)", where, detail)


def _check_steps(who, sampler, label, model, seed, fixed: Tensor, result: SampleResult) -> None:
    """`reports_steps`: a callback run gives `result` again and steps that match its order."""
    where, prop = f"{label}, fixed {fixed.tolist()}", "reports_steps"
    steps: list[StepInfo] = []
    n, length = result.tokens.shape
    again = _sample(who, sampler, label, model, n, seed, fixed, noise=1, callback=steps.append)
    difference = _difference(result, again, with_nfe=True)
    if difference:
        fail(who, f"{prop}: a callback changes nothing", where, difference)
    indices = [info.index if isinstance(info, StepInfo) else info for info in steps]
    if indices != list(range(len(steps))):
        fail(who, f"{prop}: StepInfos of steps 0, 1, …", where, f"got {indices[:10]}")
    for info in steps:
        for name, value, shape, dtype in (
            ("t", info.t, (n,), None),
            ("s", info.s, (n,), None),
            ("state", info.state, (n, length), torch.long),
            ("revealed", info.revealed, (n, length), torch.bool),
        ):
            if (
                not isinstance(value, Tensor)
                or value.shape != shape
                or dtype not in (None, value.dtype)
            ):
                got = f"{tuple(value.shape)} {value.dtype}" if isinstance(value, Tensor) else value
                fail(who, f"{prop}: {name} is {shape}", f"{where}, step {info.index}", f"got {got}")
        if bool((info.revealed & (info.state == model.mask_id)).any()):
            at = (info.revealed & (info.state == model.mask_id)).nonzero()[0].tolist()
            fail(
                who,
                f"{prop}: revealed positions hold a token",
                f"{where}, step {info.index}",
                f"mask at {at}",
            )
    valid = torch.ones_like(result.tokens, dtype=torch.bool)
    if result.lengths is not None:
        valid = torch.arange(length)[None, :] < result.lengths[:, None]
    for row, col in ((result.order >= 0) & valid).nonzero().tolist():
        step = int(result.order[row, col])
        if step >= len(steps) or not bool(steps[step].revealed[row, col]):
            detail = f"position {[row, col]} has order {step}; {len(steps)} steps reported"
            fail(who, f"{prop}: revealed at the step order gives", where, detail)
    if steps and not torch.equal(steps[-1].state[valid], result.tokens[valid]):
        fail(who, f"{prop}: the last state is the tokens", where, "they differ")


def _difference(a: SampleResult, b: SampleResult, with_nfe: bool) -> str | None:
    """Where two results differ (tokens, order, lengths and, with_nfe, nfe), or None."""
    for name, x, y in (("tokens", a.tokens, b.tokens), ("order", a.order, b.order)):
        if not torch.equal(x, y):
            at = (x != y).nonzero()[0].tolist()
            return f"{name} differ at {at}: {int(x[tuple(at)])} vs {int(y[tuple(at)])}"
    if (a.lengths is None) != (b.lengths is None) or (
        a.lengths is not None and b.lengths is not None and not torch.equal(a.lengths, b.lengths)
    ):
        return f"lengths differ: {a.lengths} vs {b.lengths}"
    if with_nfe and a.nfe != b.nfe:
        return f"nfe differ: {a.nfe} vs {b.nfe}"
    return None


def _rebuild(who: str, sampler: Sampler, cache: bool, registry: Registry) -> Sampler:
    """The sampler built again from its options with `cache` set."""
    cls = type(sampler)
    options = {**sampler.get_options(), "cache": cache}
    prop = f"has_cache: rebuilt with cache={cache}"
    return call(who, prop, lambda: cls.from_options(cls.validate_options(**options), registry))


def _accepts(sampler: Sampler, model: OeMDM) -> bool:
    try:
        sampler.check_model(model, model.length)
    except ValueError:
        return False
    return True


__all__ = ("check_sampler",)
