"""What every kit shares: `ConformanceError` and the helpers that word its messages.

Every message reads `<kind> '<name>' (<Class>): <property> fails at <input>: <detail>`, or
`... <property> raised <Error>: <message>` when the component raised instead of answering.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import torch
from torch import Tensor

from oemdm_core.errors import OeMDMError, renamed_attributes
from oemdm_core.plugin.component import Component
from oemdm_core.plugin.registry import Registry

TOL = 1e-6  # absolute tolerance for boundaries, ranges and identities of schedules


class ConformanceError(OeMDMError):
    """A component violates a property every component of its kind must have."""


def component_label(component: Component) -> str:
    """`kind 'name' (Class)`, how messages name the component under test."""
    return f"{component.kind or 'component'} '{component.name}' ({type(component).__name__})"


def fail(who: str, prop: str, where: str, detail: str) -> NoReturn:
    raise ConformanceError(f"{who}: {prop} fails at {where}: {detail}")


def call(who: str, prop: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(*args, **kwargs)`, with any exception reported as the failure of `prop`."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # report which input made the component raise
        raise ConformanceError(f"{who}: {prop} raised {type(exc).__name__}: {exc}") from exc


def call_tensor(who: str, prop: str, fn: Callable[..., Any], *args: Any) -> Tensor:
    """`call`, requiring a tensor; returned in float64."""
    out = call(who, prop, fn, *args)
    if not isinstance(out, Tensor):
        fail(who, prop, "call", f"expected a tensor, got {type(out).__name__}")
    return out.to(torch.float64)


def first_bad(bad: Tensor, grid: Tensor, values: Tensor) -> str:
    """Describe the first True of `bad` (same shape as values) with its time and value."""
    index = tuple(int(i) for i in bad.nonzero()[0])
    return f"t={float(grid[index[0]]):.17g}, index {index}, value {float(values[index])!r}"


def check_values(who: str, name: str, grid: Tensor, values: Tensor, low: float, high: float):
    """Every value finite and in [low, high] (to TOL); `grid[k]` is the time of row k."""
    bad = ~torch.isfinite(values)
    if bad.any():
        fail(who, f"{name} is finite", first_bad(bad, grid, values), "not finite")
    bad = (values < low - TOL) | (values > high + TOL)
    if bad.any():
        fail(who, f"{name} in [{low}, {high}]", first_bad(bad, grid, values), "out of range")


def hazard_identity(who, alpha_fn, velocity_fn, grid: Tensor, step: float = 1e-5) -> int:
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
        fail(
            who,
            "hazard identity v·(1 − α) = −∂α/∂t",
            f"t={float(inner[index[0]]):.17g}, index {index}",
            f"v·(1 − α) = {float(got[index])!r}, finite difference {float(expected[index])!r}",
        )
    return int(smooth.sum())


def rebuilt(who: str, component: Component, registry: Registry) -> Any:
    """`component` built again from its `get_options()` through `from_options`, as loading a
    checkpoint rebuilds it; the copy must report the same options."""
    cls = type(component)
    options = call(who, "get_options()", component.get_options)
    copy = call(
        who,
        "rebuilt from get_options()",
        lambda: cls.from_options(cls.validate_options(**options), registry=registry),
    )
    if copy.get_options() != options:
        fail(
            who,
            "rebuilt from get_options(), it reports the same options",
            f"options {options}",
            f"got {copy.get_options()}",
        )
    return copy


def mismatch(got: Tensor, expected: Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None if `got` equals `expected` in shape and values (to float tolerance), else where
    they first differ."""
    if got.shape != expected.shape:
        return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    got, expected = got.to(torch.float64), expected.to(torch.float64)
    bad = (got - expected).abs() > atol + rtol * expected.abs()
    if not bad.any():
        return None
    index = tuple(int(i) for i in bad.nonzero()[0])
    return f"index {index}: {float(got[index])!r}, expected {float(expected[index])!r}"


__all__ = ("ConformanceError",)


__getattr__ = renamed_attributes(__name__, {"describe": "component_label"}, globals())
