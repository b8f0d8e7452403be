"""`check_scorer`: a scorer ranks the positions of any model's output: `score(logits [N, L, V],
velocity [N, L] or None, generator)` gives `[N, L]` floating scores without NaN or +inf, is a
function of its generator, and when it declares `deterministic` does not read the generator
at all and scores each row from that row alone."""

from __future__ import annotations

import torch
from torch import Tensor

from oemdm_core.interfaces.sampler import Scorer
from oemdm_core.plugin.registry import Registry, resolve_registry
from oemdm_core.testing.common import call, component_label, fail, rebuilt


def scorer_inputs(seed: int) -> list[tuple[str, Tensor, Tensor | None]]:
    """(label, logits `[3, 6, 4]`, velocity `[3, 6]` or None): random logits with reverse
    velocities that are positive, zero at some positions (closed block windows), or absent."""
    gen = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(3, 6, 4, generator=gen)
    velocity = torch.randn(3, 6, generator=gen).exp()
    closed = velocity.clone()
    closed[:, 3:] = 0.0
    return [
        ("positive velocities", logits, velocity),
        ("velocity 0 at positions 3..5", logits, closed),
        ("velocity None", logits, None),
    ]


def check_scorer(scorer: Scorer, *, registry: Registry | None = None, seed: int = 0) -> None:
    """Check a built scorer on random logits `[N, L, V]` with positive, partly zero and
    absent (None) velocities `[N, L]`:

    - scores are a floating `[N, L]` tensor with no NaN and no +inf (−inf is a valid
      "last"; the top-k samplers rank it below every finite score);
    - seeded determinism: the same generator seed gives the same scores, whatever the
      global RNG;
    - `deterministic`: scores do not depend on the generator (another seed, or None,
      gives the same), and the scores of one row alone equal its scores in the batch;
    - rebuilt from `get_options()` (through `registry`, default the global one), the same
      scores for the same seed.

    Raises `ConformanceError`.
    """
    registry = resolve_registry(registry)
    who = component_label(scorer)
    if not isinstance(type(scorer).deterministic, bool):
        fail(who, "deterministic is a bool", "the declaration", repr(type(scorer).deterministic))
    copy = rebuilt(who, scorer, registry)
    for label, logits, velocity in scorer_inputs(seed):
        scores = _score(who, scorer, label, logits, velocity, seed, noise=1)
        _check_scores(who, label, scores, (logits.shape[0], logits.shape[1]))
        again = _score(who, scorer, label, logits, velocity, seed, noise=2)
        if not torch.equal(scores, again):
            prop = "seeded determinism (same generator seed, another global RNG state)"
            fail(who, prop, label, _where_different(scores, again))
        if not torch.equal(scores, _score(who, copy, label, logits, velocity, seed, noise=1)):
            fail(who, "rebuilt from get_options(), the same scores", label, "they differ")
        if type(scorer).deterministic:
            _check_deterministic(who, scorer, label, logits, velocity, seed, scores)


def _score(who, scorer, label, logits, velocity, seed: int | None, noise: int) -> Tensor:
    """One call with the global RNG set to `noise` (restored afterwards); seed None: no
    generator."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(noise)
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        scores = call(
            who, f"score(logits, velocity) ({label})", scorer.score, logits, velocity, gen
        )
    if not isinstance(scores, Tensor):
        fail(who, "score returns a tensor", label, f"got {type(scores).__name__}")
    return scores


def _check_scores(who: str, label: str, scores: Tensor, shape: tuple[int, int]) -> None:
    if scores.shape != shape or not scores.is_floating_point():
        got = f"{tuple(scores.shape)} {scores.dtype}"
        fail(who, "scores are a floating [N, L] tensor", label, f"got {got}, expected {shape}")
    bad = torch.isnan(scores) | (scores == torch.inf)
    if bad.any():
        at = bad.nonzero()[0].tolist()
        fail(who, "scores have no NaN or +inf", label, f"{float(scores[tuple(at)])} at {at}")


def _check_deterministic(who, scorer, label, logits, velocity, seed, scores: Tensor) -> None:
    for other in (seed + 1, None):
        again = _score(who, scorer, label, logits, velocity, other, noise=1)
        if not torch.equal(scores, again):
            where = f"{label}, generator seed {other} vs {seed}"
            prop = "deterministic: scores do not depend on the generator"
            fail(who, prop, where, _where_different(scores, again))
    row = None if velocity is None else velocity[1:2]
    alone = _score(who, scorer, label, logits[1:2], row, seed, noise=1)
    if alone.shape != scores[1:2].shape or not torch.allclose(alone, scores[1:2], equal_nan=True):
        prop = "deterministic: a row alone scores as in the batch"
        fail(who, prop, f"{label}, row 1", _where_different(scores[1:2], alone))


def _where_different(a: Tensor, b: Tensor) -> str:
    if a.shape != b.shape:
        return f"shapes {tuple(a.shape)} vs {tuple(b.shape)}"
    at = (a != b).nonzero()[0].tolist()
    return f"at {at}: {float(a[tuple(at)])!r} vs {float(b[tuple(at)])!r}"


__all__ = ("check_scorer",)
