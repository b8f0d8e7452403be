"""Checks of base schedules (`check_schedule`) and of per-position schedules
(`check_position_schedule`, what `check_order` runs on an order's forward and reverse
schedules).

Properties (DESIGN section 2): α(0) = 1, α(1) = 0, non-increasing, values in [0, 1];
velocity finite and ≥ 0; un-mask probabilities in [0, 1] and equal to
(α(s) − α(t)) / (1 − α(t)); no NaN at window edges or as t → 0 and t → 1; the velocity
agrees with α through the hazard identity v·(1 − α) = −∂_t α (checked by finite differences
where α is smooth); and one schedule object answers any times, in any batch layout.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from oemdm_core.interfaces.position_schedule import PositionSchedule
from oemdm_core.interfaces.schedule import BaseSchedule
from oemdm_core.plugin.registry import Registry, resolve_registry
from oemdm_core.testing.common import (
    TOL,
    call_tensor,
    check_values,
    component_label,
    fail,
    first_bad,
    hazard_identity,
    rebuilt,
)
from oemdm_core.testing.strategies import edge_times


def default_grid(length: int) -> list[float]:
    """Times to check at: a uniform grid off the window edges of small block sizes, plus
    0, 1, their neighbours and the window edges k/length."""
    uniform = [k / 97 for k in range(98)]
    return sorted(set(uniform) | set(edge_times(length)))


def check_schedule(
    schedule: BaseSchedule,
    times: Iterable[float] | None = None,
    *,
    registry: Registry | None = None,
) -> None:
    """Check a base schedule α_b(s) (a `BaseSchedule`): boundaries, range, monotonicity,
    velocity, dalpha and one_minus_alpha consistency, the hazard identity; rebuilt from
    `get_options()` (through `registry`, default the global one), the same α.

    times: base times in [0, 1] to check at (default: a grid with 0, 1 and their
    neighbours); 0 and 1 are always included. Raises `ConformanceError`.
    """
    who = component_label(schedule)
    grid = torch.tensor(
        sorted({0.0, 1.0, *(float(t) for t in (times if times is not None else default_grid(0)))}),
        dtype=torch.float64,
    )
    alpha = call_tensor(who, "alpha(s)", schedule.alpha, grid)
    if alpha.shape != grid.shape:
        fail(who, "alpha keeps the input shape", "s of shape [N]", f"got {tuple(alpha.shape)}")
    check_values(who, "alpha", grid, alpha, 0.0, 1.0)
    if abs(float(alpha[0]) - 1.0) > TOL:
        fail(who, "alpha(0) = 1", "s=0", f"alpha = {float(alpha[0])!r}")
    if abs(float(alpha[-1])) > TOL:
        fail(who, "alpha(1) = 0", "s=1", f"alpha = {float(alpha[-1])!r}")
    rise = alpha[1:] - alpha[:-1]
    if (rise > TOL).any():
        i = int((rise > TOL).nonzero()[0])
        fail(
            who,
            "alpha is non-increasing",
            f"s={float(grid[i])!r} → {float(grid[i + 1])!r}",
            f"alpha {float(alpha[i])!r} → {float(alpha[i + 1])!r}",
        )
    one_minus = call_tensor(who, "one_minus_alpha(s)", schedule.one_minus_alpha, grid)
    bad = (one_minus - (1.0 - alpha)).abs() > TOL
    if bad.any():
        fail(who, "one_minus_alpha = 1 − alpha", first_bad(bad, grid, one_minus), "mismatch")
    velocity = call_tensor(who, "velocity(s)", schedule.velocity, grid)
    check_values(who, "velocity", grid, velocity, 0.0, float("inf"))
    dalpha = call_tensor(who, "dalpha(s)", schedule.dalpha, grid)
    bad = ~torch.isfinite(dalpha[1:-1]) | (dalpha[1:-1] > TOL)
    if bad.any():
        where = first_bad(bad, grid[1:-1], dalpha[1:-1])
        fail(who, "dalpha finite and ≤ 0 inside (0, 1)", where, "positive or not finite")

    def a(s):
        return schedule.alpha(s.clamp(0.0, 1.0)).to(torch.float64)

    def v(s):
        return schedule.velocity(s).to(torch.float64)

    hazard_identity(who, a, v, grid)
    _check_same_answers(who, lambda s: schedule.alpha(s), grid, elementwise=True)
    copy = rebuilt(who, schedule, resolve_registry(registry))
    again = call_tensor(who, "alpha(s) of the rebuilt schedule", copy.alpha, grid)
    bad = (again - alpha).abs() > TOL
    if bad.any():
        fail(who, "rebuilt from get_options(), the same alpha", first_bad(bad, grid, again), "")


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
        fail(who, prop, f"times {sample.tolist()} asked twice", "values differ")
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
                fail(
                    who,
                    prop,
                    f"t={t!r} given as {type(value).__name__}"
                    + ("" if rows is None else f", row {i}"),
                    f"got {single.tolist()}, the batched call gave {expected.tolist()}",
                )


def check_position_schedule(
    schedule: PositionSchedule,
    length: int,
    rows: int | None = None,
    times: Iterable[float] | None = None,
    who: str = "",
) -> None:
    """Check a `PositionSchedule` over `length` positions at the given times (default grid):
    α(0) = 1, α(1) = 0, non-increasing, in [0, 1]; velocity finite ≥ 0; un-mask
    probabilities in [0, 1] and consistent with α; hazard identity; any-t answers.

    rows: the batch size the schedule was built for (default: its declared `rows`; None:
    any number of times); then "position" in messages counts row-major over the B × L
    entries.
    """
    who = who or type(schedule).__name__
    rows = schedule.rows if rows is None else rows
    values = sorted(
        {0.0, 1.0, *(float(t) for t in (times if times is not None else default_grid(length)))}
    )
    grid = torch.tensor(values, dtype=torch.float64)
    width = length * (rows or 1)  # a batch-bound schedule is checked on all its rows

    alpha = call_tensor(who, "alpha(t)", _at, schedule.alpha, grid, rows)
    _check_shape(who, "alpha", alpha, grid, width)
    check_values(who, "alpha", grid, alpha, 0.0, 1.0)
    _check_alpha_path(who, grid, alpha)
    velocity = call_tensor(who, "velocity(t)", _at, schedule.velocity, grid, rows)
    _check_shape(who, "velocity", velocity, grid, width)
    check_values(who, "velocity", grid, velocity, 0.0, float("inf"))
    _check_unmask_probabilities(who, schedule, grid, alpha, rows)

    def a(x):
        return _at(schedule.alpha, x.clamp(0.0, 1.0), rows).to(torch.float64)

    def v(x):
        return _at(schedule.velocity, x, rows).to(torch.float64)

    hazard_identity(who, a, v, grid)
    for fn in (schedule.alpha, schedule.velocity):
        _check_same_answers(who, fn, grid, elementwise=False, rows=rows)


def _at(fn, t: Tensor, rows: int | None) -> Tensor:
    """fn at every time in t: `[N, L]`, or `[N, B·L]` (row-major) for B bound rows."""
    if rows is None:
        return fn(t)
    return torch.stack(
        [fn(torch.full((rows,), float(x), dtype=torch.float64)).reshape(-1) for x in t]
    )


def _check_shape(who: str, name: str, values: Tensor, grid: Tensor, width: int) -> None:
    n = grid.numel()
    if values.shape != (n, width):
        fail(
            who,
            f"{name}(t) has shape [B, L]",
            f"t of shape [{n}]",
            f"got {tuple(values.shape)}, expected {(n, width)}",
        )


def _check_alpha_path(who: str, grid: Tensor, alpha: Tensor) -> None:
    """α(0) = 1, α(1) = 0 and α non-increasing along the sorted grid (`alpha: [N, W]`)."""
    bad = (alpha[0] - 1.0).abs() > TOL
    if bad.any():
        fail(
            who,
            "alpha(0) = 1",
            f"t=0, position {int(bad.nonzero()[0])}",
            f"alpha = {float(alpha[0][bad][0])!r}",
        )
    bad = alpha[-1].abs() > TOL
    if bad.any():
        fail(
            who,
            "alpha(1) = 0",
            f"t=1, position {int(bad.nonzero()[0])}",
            f"alpha = {float(alpha[-1][bad][0])!r}",
        )
    rise = alpha[1:] - alpha[:-1]
    if (rise > TOL).any():
        i, pos = (int(j) for j in (rise > TOL).nonzero()[0])
        fail(
            who,
            "alpha is non-increasing",
            f"t={float(grid[i])!r} → {float(grid[i + 1])!r}, position {pos}",
            f"alpha {float(alpha[i, pos])!r} → {float(alpha[i + 1, pos])!r}",
        )


def _check_unmask_probabilities(
    who: str, schedule: PositionSchedule, grid: Tensor, alpha: Tensor, rows: int | None
) -> None:
    """For every pair s ≤ t of the grid (a step t → s): un-mask probabilities finite, in
    [0, 1] and equal to (α(s) − α(t)) / (1 − α(t)) away from 0/0."""
    n = grid.numel()
    s_idx, t_idx = torch.triu_indices(n, n)
    if rows is not None:  # one call per pair: keep it to a few hundred pairs
        keep = torch.arange(0, s_idx.numel(), max(1, s_idx.numel() // 300))
        s_idx, t_idx = s_idx[keep], t_idx[keep]
    s, t = grid[s_idx], grid[t_idx]
    if rows is None:
        prob = call_tensor(who, "unmask_probability(s, t)", schedule.unmask_probability, s, t)
    else:
        prob = torch.stack(
            [
                call_tensor(
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
        fail(
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
        fail(
            who,
            "unmask_probability = (α(s) − α(t)) / (1 − α(t))",
            f"{pairs[k]}, position {pos}",
            f"got {float(prob[k, pos])!r}, expected {float(expected[k, pos])!r}",
        )


__all__ = ("check_position_schedule", "check_schedule")
