"""Conformance kit for plugin authors: hypothesis strategies and checks that every base
schedule and every order must pass.

Use the checks standalone::

    from oemdm_core.testing.kits import check_schedule, check_order
    check_schedule(MySchedule())
    check_order(MyOrder(), base=registry.build("schedule", "linear"))

or inside hypothesis tests, passing drawn times::

    @given(t=times())
    def test_my_schedule(t):
        check_schedule(MySchedule(), times=[t])

A failing check raises `ConformanceError` naming the component, the property and the input.
Properties (DESIGN section 2): α(0) = 1, α(1) = 0, non-increasing, values in [0, 1];
velocity finite and ≥ 0; un-mask probabilities in [0, 1] and equal to
(α(s) − α(t)) / (1 − α(t)); no NaN at window edges or as t → 0 and t → 1; the velocity
agrees with α through the hazard identity v·(1 − α) = −∂_t α (checked by finite differences
where α is smooth); and one schedule object answers any times, in any batch layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from oemdm_core.errors import OeMDMError

try:  # hypothesis is a test dependency; the checks work without it.
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    st = None

TOL = 1e-6  # absolute tolerance for boundaries, ranges and identities
EDGE_EPS = (0.0, 1e-12, 1e-9, 1e-6)  # offsets around edges and the ends of [0, 1]


class ConformanceError(OeMDMError):
    """A component violates a property every component of its kind must have."""


# -- strategies ------------------------------------------------------------------------------
def _require_hypothesis() -> None:
    if st is None:  # pragma: no cover
        raise ImportError(
            "oemdm_core.testing.kits strategies need hypothesis: pip install hypothesis"
        )


def edge_times(length: int = 0) -> list[float]:
    """0, 1, values next to them, and the window edges k/length (and their neighbours)."""
    points = {0.0, 1.0}
    for eps in EDGE_EPS[1:]:
        points |= {eps, 1.0 - eps}
    for k in range(1, length):
        edge = k / length
        points |= {edge, edge - 1e-9, edge + 1e-9}
    return sorted(points)


def times(length: int = 0):
    """Strategy of times in [0, 1]: uniform floats, plus 0, 1, values next to them and the
    window edges k/length of block orders over `length` positions."""
    _require_hypothesis()
    return st.one_of(
        st.sampled_from(edge_times(length)),
        # Subnormal times are excluded: a velocity like 1/t overflows there by design.
        st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_subnormal=False),
    )


def time_pairs(length: int = 0):
    """Strategy of pairs (s, t) with 0 ≤ s ≤ t ≤ 1 (a reverse step t → s)."""
    return st.tuples(times(length), times(length)).map(lambda p: (min(p), max(p)))


def batch_sizes(max_size: int = 4):
    """Strategy of batch sizes B in [1, max_size]."""
    _require_hypothesis()
    return st.integers(min_value=1, max_value=max_size)


def lengths(max_length: int = 8, multiple_of: int = 1):
    """Strategy of sequence lengths L ≤ max_length that are multiples of `multiple_of`."""
    _require_hypothesis()
    return st.integers(min_value=1, max_value=max_length // multiple_of).map(
        lambda n: n * multiple_of
    )


def vocab_sizes(max_size: int = 8):
    """Strategy of vocabulary sizes V in [1, max_size] (the mask is id V)."""
    _require_hypothesis()
    return st.integers(min_value=1, max_value=max_size)


def token_batches(vocab_size: int, length: int, max_batch: int = 4, with_mask: bool = False):
    """Strategy of LongTensor `[B, L]` ids in [0, V) (or [0, V] with the mask id V)."""
    _require_hypothesis()
    high = vocab_size + (1 if with_mask else 0) - 1
    return batch_sizes(max_batch).flatmap(
        lambda b: st.lists(
            st.lists(st.integers(0, high), min_size=length, max_size=length),
            min_size=b,
            max_size=b,
        ).map(lambda rows: torch.tensor(rows, dtype=torch.long))
    )


# -- helpers -----------------------------------------------------------------------------------
def _describe(component: Any) -> str:
    kind = getattr(component, "kind", "") or "component"
    name = getattr(component, "name", "") or type(component).__name__
    return f"{kind} '{name}'"


def _fail(who: str, prop: str, where: str, detail: str) -> None:
    raise ConformanceError(f"{who}: {prop} fails at {where}: {detail}")


def _first_bad(bad: Tensor, grid: Tensor, values: Tensor) -> str:
    """Describe the first True of `bad` (same shape as values) with its time and value."""
    index = tuple(int(i) for i in bad.nonzero()[0])
    return f"t={float(grid[index[0]]):.17g}, index {index}, value {float(values[index])!r}"


def _call(who: str, prop: str, fn, *args) -> Tensor:
    try:
        out = fn(*args)
    except Exception as exc:  # report which input made the component raise
        raise ConformanceError(f"{who}: {prop} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(out, Tensor):
        _fail(who, prop, "call", f"expected a tensor, got {type(out).__name__}")
    return out.to(torch.float64)


def _check_values(who: str, name: str, grid: Tensor, values: Tensor, low: float, high: float):
    bad = ~torch.isfinite(values)
    if bad.any():
        _fail(who, f"{name} is finite", _first_bad(bad, grid, values), "not finite")
    bad = (values < low - TOL) | (values > high + TOL)
    if bad.any():
        _fail(who, f"{name} in [{low}, {high}]", _first_bad(bad, grid, values), "out of range")


def _hazard_identity(who, alpha_fn, velocity_fn, grid: Tensor, step: float = 1e-5) -> int:
    """Check v·(1 − α) ≈ −∂_t α by central differences where α is smooth (the one-sided
    slopes agree); returns the number of points checked."""
    inner = grid[(grid > 2 * step) & (grid < 1 - 2 * step)]
    if inner.numel() == 0:
        return 0
    a_mid, a_lo, a_hi = (alpha_fn(inner + d) for d in (0.0, -step, step))
    left, right = (a_lo - a_mid) / step, (a_mid - a_hi) / step  # −∂α from each side
    scale = 1.0 + left.abs() + right.abs()
    smooth = (left - right).abs() <= 1e-3 * scale
    expected = 0.5 * (left + right)
    got = velocity_fn(inner) * (1.0 - a_mid)
    bad = smooth & ((got - expected).abs() > 1e-3 * scale)
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        _fail(
            who,
            "hazard identity v·(1 − α) = −∂α/∂t",
            f"t={float(inner[index[0]]):.17g}, index {index}",
            f"v·(1 − α) = {float(got[index])!r}, finite difference {float(expected[index])!r}",
        )
    return int(smooth.sum())


def _default_grid(length: int) -> list[float]:
    uniform = [k / 97 for k in range(98)]  # off the window edges of small block sizes
    return sorted(set(uniform) | set(edge_times(length)))


# -- base schedules ---------------------------------------------------------------------------
def check_schedule(schedule: Any, times: Iterable[float] | None = None) -> None:
    """Check a base schedule α_b(s) (a `BaseSchedule`): boundaries, range, monotonicity,
    velocity, dalpha and one_minus_alpha consistency, the hazard identity.

    times: base times in [0, 1] to check at (default: a grid with 0, 1 and their
    neighbours); 0 and 1 are always included. Raises `ConformanceError`.
    """
    who = f"{_describe(schedule)} ({type(schedule).__name__})"
    grid = torch.tensor(
        sorted({0.0, 1.0, *(float(t) for t in (times if times is not None else _default_grid(0)))}),
        dtype=torch.float64,
    )
    alpha = _call(who, "alpha(s)", schedule.alpha, grid)
    if alpha.shape != grid.shape:
        _fail(who, "alpha keeps the input shape", "s of shape [N]", f"got {tuple(alpha.shape)}")
    _check_values(who, "alpha", grid, alpha, 0.0, 1.0)
    if abs(float(alpha[0]) - 1.0) > TOL:
        _fail(who, "alpha(0) = 1", "s=0", f"alpha = {float(alpha[0])!r}")
    if abs(float(alpha[-1])) > TOL:
        _fail(who, "alpha(1) = 0", "s=1", f"alpha = {float(alpha[-1])!r}")
    rise = alpha[1:] - alpha[:-1]
    if (rise > TOL).any():
        i = int((rise > TOL).nonzero()[0])
        _fail(
            who,
            "alpha is non-increasing",
            f"s={float(grid[i])!r} → {float(grid[i + 1])!r}",
            f"alpha {float(alpha[i])!r} → {float(alpha[i + 1])!r}",
        )
    one_minus = _call(who, "one_minus_alpha(s)", schedule.one_minus_alpha, grid)
    bad = (one_minus - (1.0 - alpha)).abs() > TOL
    if bad.any():
        _fail(who, "one_minus_alpha = 1 − alpha", _first_bad(bad, grid, one_minus), "mismatch")
    velocity = _call(who, "velocity(s)", schedule.velocity, grid)
    _check_values(who, "velocity", grid, velocity, 0.0, float("inf"))
    dalpha = _call(who, "dalpha(s)", schedule.dalpha, grid)
    bad = ~torch.isfinite(dalpha[1:-1]) | (dalpha[1:-1] > TOL)
    if bad.any():
        where = _first_bad(bad, grid[1:-1], dalpha[1:-1])
        _fail(who, "dalpha finite and ≤ 0 inside (0, 1)", where, "positive or not finite")

    def a(s):
        return schedule.alpha(s.clamp(0.0, 1.0)).to(torch.float64)

    def v(s):
        return schedule.velocity(s).to(torch.float64)

    _hazard_identity(who, a, v, grid)
    _check_same_answers(who, lambda s: schedule.alpha(s), grid, elementwise=True)


def _check_same_answers(who: str, fn, grid: Tensor, elementwise: bool, rows: int | None = None):
    """The object answers any times: a batch of times gives the rows of one-at-a-time
    calls (a float or 0-d tensor means the same time for every row), and asking again
    gives the same values."""
    prop = "the same object answers any t"
    sample = grid[torch.linspace(0, grid.numel() - 1, min(6, grid.numel())).long()]
    if rows is not None:  # a schedule built for B rows takes exactly B times
        sample = sample.repeat(rows)[:rows]
    batched = fn(sample).to(torch.float64)
    if rows is None:
        again = fn(sample.flip(0)).to(torch.float64).flip(0)
    else:
        again = fn(sample).to(torch.float64)
    if not torch.allclose(batched, again, atol=TOL, rtol=0, equal_nan=True):
        _fail(who, prop, f"times {sample.tolist()} asked twice", "values differ")
    for i, t in enumerate(sample.tolist()):
        if rows is None:
            expected = batched[i] if elementwise else batched[i : i + 1]
            inputs = [torch.tensor([t], dtype=torch.float64)]
            if not elementwise:  # per-position schedules also take a float or a 0-d tensor
                inputs += [t, torch.tensor(t, dtype=torch.float64)]
            row = slice(None)
        else:
            expected = batched[i : i + 1]
            inputs = [torch.full((rows,), t, dtype=torch.float64), t]
            row = slice(i, i + 1)
        for value in inputs:
            single = fn(value).to(torch.float64)
            single = single if rows is None else single[row]
            if single.numel() != expected.numel() or not torch.allclose(
                single.reshape(expected.shape), expected, atol=TOL, rtol=0
            ):
                _fail(
                    who,
                    prop,
                    f"t={t!r} given as {type(value).__name__}"
                    + ("" if rows is None else f", row {i}"),
                    f"got {single.tolist()}, the batched call gave {expected.tolist()}",
                )


class _ReferenceLinear:
    """α_b(s) = 1 − s, the default base schedule for `check_order` (no plugin needed)."""

    def alpha(self, s: Tensor) -> Tensor:
        return 1.0 - s

    def one_minus_alpha(self, s: Tensor) -> Tensor:
        return s

    def dalpha(self, s: Tensor) -> Tensor:
        return torch.full_like(s, -1.0)

    def velocity(self, s: Tensor) -> Tensor:
        safe = torch.where(s > 0, s, torch.ones_like(s))
        return torch.where(s > 0, 1.0 / safe, torch.zeros_like(s))


# -- orders and per-position schedules --------------------------------------------------------
def check_position_schedule(
    schedule: Any,
    length: int,
    rows: int | None = None,
    times: Iterable[float] | None = None,
    who: str = "",
) -> None:
    """Check a `PositionSchedule` over `length` positions at the given times (default grid):
    α(0) = 1, α(1) = 0, non-increasing, in [0, 1]; velocity finite ≥ 0; un-mask
    probabilities in [0, 1] and consistent with α; hazard identity; any-t answers.

    rows: the batch size the schedule was built for (None: any number of times); then
    "position" in messages counts row-major over the B × L entries.
    """
    who = who or type(schedule).__name__
    values = sorted(
        {0.0, 1.0, *(float(t) for t in (times if times is not None else _default_grid(length)))}
    )
    grid = torch.tensor(values, dtype=torch.float64)
    n = grid.numel()

    width = length * (rows or 1)  # a batch-bound schedule is checked on all its rows

    def at(fn, t: Tensor) -> Tensor:
        """fn at every time in t: `[N, L]`, or `[N, B·L]` (row-major) for B bound rows."""
        if rows is None:
            return fn(t)
        return torch.stack(
            [fn(torch.full((rows,), float(x), dtype=torch.float64)).reshape(-1) for x in t]
        )

    alpha = _call(who, "alpha(t)", at, schedule.alpha, grid)
    if alpha.shape != (n, width):
        _fail(
            who,
            "alpha(t) has shape [B, L]",
            f"t of shape [{n}]",
            f"got {tuple(alpha.shape)}, expected {(n, width)}",
        )
    _check_values(who, "alpha", grid, alpha, 0.0, 1.0)
    bad = (alpha[0] - 1.0).abs() > TOL
    if bad.any():
        _fail(
            who,
            "alpha(0) = 1",
            f"t=0, position {int(bad.nonzero()[0])}",
            f"alpha = {float(alpha[0][bad][0])!r}",
        )
    bad = alpha[-1].abs() > TOL
    if bad.any():
        _fail(
            who,
            "alpha(1) = 0",
            f"t=1, position {int(bad.nonzero()[0])}",
            f"alpha = {float(alpha[-1][bad][0])!r}",
        )
    rise = alpha[1:] - alpha[:-1]
    if (rise > TOL).any():
        i, pos = (int(j) for j in (rise > TOL).nonzero()[0])
        _fail(
            who,
            "alpha is non-increasing",
            f"t={float(grid[i])!r} → {float(grid[i + 1])!r}, position {pos}",
            f"alpha {float(alpha[i, pos])!r} → {float(alpha[i + 1, pos])!r}",
        )
    velocity = _call(who, "velocity(t)", at, schedule.velocity, grid)
    if velocity.shape != (n, width):
        _fail(
            who, "velocity(t) has shape [B, L]", f"t of shape [{n}]", f"got {tuple(velocity.shape)}"
        )
    _check_values(who, "velocity", grid, velocity, 0.0, float("inf"))

    # Un-mask probabilities for every pair s ≤ t of the grid (a step t → s).
    s_idx, t_idx = torch.triu_indices(n, n)
    if rows is not None:  # one call per pair: keep it to a few hundred pairs
        keep = torch.arange(0, s_idx.numel(), max(1, s_idx.numel() // 300))
        s_idx, t_idx = s_idx[keep], t_idx[keep]
    s, t = grid[s_idx], grid[t_idx]
    if rows is None:
        prob = _call(who, "unmask_probability(s, t)", schedule.unmask_probability, s, t)
    else:
        prob = torch.stack(
            [
                _call(
                    who,
                    "unmask_probability(s, t)",
                    schedule.unmask_probability,
                    torch.full((rows,), float(a), dtype=torch.float64),
                    torch.full((rows,), float(b), dtype=torch.float64),
                ).reshape(-1)
                for a, b in zip(s.tolist(), t.tolist(), strict=True)
            ]
        )
    pairs = [f"(s={a!r}, t={b!r})" for a, b in zip(s.tolist(), t.tolist(), strict=True)]
    bad = ~torch.isfinite(prob) | (prob < -TOL) | (prob > 1 + TOL)
    if bad.any():
        k, pos = (int(j) for j in bad.nonzero()[0])
        _fail(
            who,
            "unmask_probability in [0, 1]",
            f"{pairs[k]}, position {pos}",
            f"value {float(prob[k, pos])!r}",
        )
    masked_t = 1.0 - alpha[t_idx]
    expected = (alpha[s_idx] - alpha[t_idx]) / masked_t.clamp_min(1e-300)
    check = masked_t > 1e-4  # away from 0/0; elsewhere only the range is required
    bad = check & ((prob - expected).abs() > 1e-4)
    if bad.any():
        k, pos = (int(j) for j in bad.nonzero()[0])
        _fail(
            who,
            "unmask_probability = (α(s) − α(t)) / (1 − α(t))",
            f"{pairs[k]}, position {pos}",
            f"got {float(prob[k, pos])!r}, expected {float(expected[k, pos])!r}",
        )

    def a(x):
        return at(schedule.alpha, x.clamp(0.0, 1.0)).to(torch.float64)

    def v(x):
        return at(schedule.velocity, x).to(torch.float64)

    _hazard_identity(who, a, v, grid)
    for name in ("alpha", "velocity"):
        _check_same_answers(who, getattr(schedule, name), grid, elementwise=False, rows=rows)


def check_order(
    order: Any,
    base: Any = None,
    *,
    model: Any = None,
    x: Tensor | None = None,
    length: int = 4,
    vocab_size: int = 3,
    times: Iterable[float] | None = None,
    generator: torch.Generator | None = None,
) -> None:
    """Check an order: its forward schedule for clean tokens and its reverse schedule at
    noisy states drawn from the forward process both pass `check_position_schedule`.

    `order` may be an instance or a class (built with its default options). Pass `model`
    (an `OeMDM` using this order) for learned orders and orders that read backbone
    features; otherwise `base` is the base schedule (default: the linear 1 − s). x: `[B, L]` clean ids (default: random
    with the given length and vocab_size). Raises `ConformanceError`.
    """
    if isinstance(order, type):  # a class: build it with its default options
        order = order.from_options(order.validate_options())
    who = f"{_describe(order)} ({type(order).__name__})"
    if model is not None:
        base = model.schedule
        length = model.length
        vocab_size = model.vocab_size
    elif getattr(order, "needs_features", False) or getattr(order, "learned", False):
        raise ValueError(
            f"{who} reads backbone features or has parameters: pass model= (an OeMDM using it)"
        )
    elif base is None:
        base = _ReferenceLinear()
    if x is None:
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        x = torch.randint(0, vocab_size, (2, length), generator=gen)
    length = x.shape[1]
    if model is not None:
        forward = _call_obj(who, "forward_schedule(x)", model.forward_schedule, x)
    else:
        forward = _call_obj(who, "forward_schedule(x)", order.forward_schedule, x, base, None)
    rows = getattr(forward, "rows", None)
    check_position_schedule(forward, length, rows, times, who=f"{who} forward schedule")

    # Reverse schedules at a few noisy states z_t ~ q(· | x).
    for t_value in (1.0, 0.5, 0.05):
        t = torch.full((x.shape[0],), t_value)
        keep = forward.alpha(t).to(torch.float64)
        gen = generator if generator is not None else torch.Generator().manual_seed(1)
        masked = torch.rand(x.shape, generator=gen, dtype=torch.float64) >= keep
        mask_id = vocab_size
        z_t = torch.where(masked, torch.full_like(x, mask_id), x)
        if model is not None:
            reverse = _call_obj(who, "reverse_schedule(z_t, t)", model.reverse_schedule, z_t, t)
        else:
            reverse = _call_obj(
                who, "reverse_schedule(z_t, t)", order.reverse_schedule, z_t, t, base, None
            )
        check_position_schedule(
            reverse,
            length,
            getattr(reverse, "rows", None),
            times,
            who=f"{who} reverse schedule at t={t_value}",
        )


def _call_obj(who: str, prop: str, fn, *args):
    try:
        return fn(*args)
    except Exception as exc:
        raise ConformanceError(f"{who}: {prop} raised {type(exc).__name__}: {exc}") from exc


__all__: Sequence[str] = (
    "ConformanceError",
    "batch_sizes",
    "check_order",
    "check_position_schedule",
    "check_schedule",
    "edge_times",
    "lengths",
    "time_pairs",
    "times",
    "token_batches",
    "vocab_sizes",
)
