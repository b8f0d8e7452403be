"""`check_order`: an order's forward schedule for clean tokens and its reverse schedule at
noisy states drawn from the forward process both pass `check_position_schedule`; given a
registry, on a model of the reference backbone over every base schedule it holds."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from oemdm_core.interfaces.order import Order
from oemdm_core.interfaces.schedule import BaseSchedule
from oemdm_core.model.oemdm import OeMDM
from oemdm_core.plugin.registry import Registry, resolve_registry
from oemdm_core.testing.common import ConformanceError, call, component_label, rebuilt
from oemdm_core.testing.reference import ReferenceBackbone, ReferenceLinear
from oemdm_core.testing.schedule import check_position_schedule


def check_order(
    order: Order | type[Order],
    base: BaseSchedule | None = None,
    *,
    model: OeMDM | None = None,
    x: Tensor | None = None,
    length: int = 4,
    vocab_size: int = 3,
    times: Iterable[float] | None = None,
    generator: torch.Generator | None = None,
    registry: Registry | None = None,
) -> None:
    """Check an order: its forward schedule for clean tokens and its reverse schedule at
    noisy states drawn from the forward process both pass `check_position_schedule`.

    `order` may be an instance or a class (built with its default options). Pass `model`
    (an `OeMDM` using this order, e.g. one of `reference_models`) for learned orders and
    orders that read backbone features; otherwise `base` is the base schedule (default:
    the linear 1 − s). x: `[B, L]` clean ids (default: random with the given length and
    vocab_size). Rebuilt from `get_options()` (through `registry`, default the global one),
    the order reports the same options. Raises `ConformanceError`.

    registry: with neither `model` nor `base`, the order is rebuilt from `get_options()`
    (it must report the same options) into a model of the reference backbone (length 8)
    with each base schedule of `registry`, and checked on each: what `oemdm check-plugin`
    runs, for every order, learned ones included.
    """
    if isinstance(order, type):  # a class: build it with its default options
        order = order.from_options(order.validate_options())
    who = component_label(order)
    if registry is not None and model is None and base is None:
        for schedule in registry.available("schedule"):
            model = _reference_model(who, order, schedule, vocab_size, registry)
            try:
                check_order(model.order, model=model, x=x, times=times, generator=generator)
            except ConformanceError as exc:
                raise ConformanceError(f"{exc} (base schedule '{schedule}')") from exc
        return
    if model is not None:
        base, length, vocab_size = model.schedule, model.length, model.vocab_size
    elif order.needs_features or order.learned:
        raise ValueError(
            f"{who} reads backbone features or has parameters: pass model= (an OeMDM using it)"
        )
    elif base is None:
        base = ReferenceLinear()
    if x is None:
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        x = torch.randint(0, vocab_size, (2, length), generator=gen)
    length = x.shape[1]
    if model is not None:
        forward = call(who, "forward_schedule(x)", model.forward_schedule, x)
    else:
        forward = call(who, "forward_schedule(x)", order.forward_schedule, x, base, None)
    check_position_schedule(forward, length, None, times, who=f"{who} forward schedule")

    # Reverse schedules at a few noisy states z_t ~ q(· | x).
    for t_value in (1.0, 0.5, 0.05):
        t = torch.full((x.shape[0],), t_value)
        keep = forward.alpha(t).to(torch.float64)
        gen = generator if generator is not None else torch.Generator().manual_seed(1)
        masked = torch.rand(x.shape, generator=gen, dtype=torch.float64) >= keep
        z_t = torch.where(masked, torch.full_like(x, vocab_size), x)  # id V is the mask
        if model is not None:
            reverse = call(who, "reverse_schedule(z_t, t)", model.reverse_schedule, z_t, t)
        else:
            reverse = call(
                who, "reverse_schedule(z_t, t)", order.reverse_schedule, z_t, t, base, None
            )
        check_position_schedule(
            reverse, length, None, times, who=f"{who} reverse schedule at t={t_value}"
        )
    rebuilt(who, order, resolve_registry(registry))  # a checkpoint rebuilds it from its options


def _reference_model(who: str, order: Order, schedule: str, vocab_size: int, registry: Registry):
    """`order`, rebuilt from its options (learned ones draw their weights from seed 0), on
    the reference backbone of length 8 over the base schedule `schedule` of `registry`."""
    length = 8
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        copy = rebuilt(who, order, resolve_registry(registry))
    backbone = ReferenceBackbone(vocab_size=vocab_size, max_length=length)
    return OeMDM(backbone, copy, registry.build("schedule", schedule), length=length)


__all__ = ("check_order",)
