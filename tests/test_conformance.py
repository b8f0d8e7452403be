"""The conformance kit (`oemdm_core.testing.kits`) runs unchanged over every registered schedule
and order, and catches components that break the contract."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oemdm_core import BaseSchedule, Order, WindowedSchedule, block_windows, hookimpl, registry
from oemdm_core.testing.kits import (
    ConformanceError,
    check_order,
    check_position_schedule,
    check_schedule,
    edge_times,
    lengths,
    time_pairs,
    times,
    token_batches,
    vocab_sizes,
)

SCHEDULES = registry.available("schedule")
ORDERS = registry.available("order")
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def models():
    """One tiny model per (order, schedule); every order is built the same way."""
    return {(o, s): tiny_model(o, s) for o in ORDERS for s in SCHEDULES}


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_passes_on_the_default_grid(name):
    check_schedule(registry.build("schedule", name))


@pytest.mark.parametrize("name", SCHEDULES)
@FAST
@given(t=st.lists(times(), min_size=1, max_size=5))
def test_every_schedule_passes_at_drawn_times(name, t):
    check_schedule(registry.build("schedule", name), times=t)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("order", ORDERS)
def test_every_order_passes_on_the_default_grid(models, order, schedule):
    model = models[(order, schedule)]
    check_order(model.order, model=model)


@pytest.mark.parametrize("order", ORDERS)
@FAST
@given(data=st.data())
def test_every_order_passes_at_drawn_times_and_tokens(models, order, data):
    model = models[(order, "cosine")]
    x = data.draw(token_batches(model.vocab_size, model.length, max_batch=3))
    t = data.draw(st.lists(times(model.length), min_size=1, max_size=4))
    check_order(model.order, model=model, x=x, times=t)


@pytest.mark.parametrize("order", ORDERS)
@FAST
@given(pair=time_pairs(4))
def test_every_order_never_nan_at_edges_in_the_nelbo(models, order, pair):
    model = models[(order, "linear")]
    x = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in pair:
            terms = model.nelbo(x, t=torch.full((2,), t), generator=generator)
            assert torch.isfinite(terms.total).all(), (order, t)
        terms = model.nelbo(x, steps=7, generator=generator)
        assert torch.isfinite(terms.total).all()


# -- strategies --------------------------------------------------------------------------------
def test_edge_times_include_ends_and_window_edges():
    points = edge_times(4)
    assert {0.0, 1.0, 0.25, 0.5, 0.75} <= set(points)
    assert all(0.0 <= p <= 1.0 for p in points)


@settings(max_examples=30, deadline=None)
@given(v=vocab_sizes(5), n=lengths(8, multiple_of=2), data=st.data())
def test_token_strategies_respect_their_bounds(v, n, data):
    assert n % 2 == 0 and 1 <= v <= 5
    x = data.draw(token_batches(v, n, with_mask=True))
    assert x.dtype == torch.long and x.shape[1] == n and 1 <= x.shape[0] <= 4
    assert int(x.min()) >= 0 and int(x.max()) <= v
    s, t = data.draw(time_pairs())
    assert 0.0 <= s <= t <= 1.0


# -- the kit catches broken components ----------------------------------------------------------
class Broken(BaseSchedule):
    """A linear schedule with one defect chosen by `defect`."""

    name = "broken"

    def __init__(self, defect: str) -> None:
        self.defect = defect

    def alpha(self, s):
        if self.defect == "end":
            return 1.0 - 0.9 * s
        if self.defect == "bump":
            return torch.where((s > 0.4) & (s < 0.6), torch.full_like(s, 0.7), 1.0 - s)
        if self.defect == "nan":
            return torch.where(s == 1.0, torch.nan, 1.0 - s)
        if self.defect == "batch_dependent" and s.numel() == 1:
            return 0.999 * (1.0 - s)  # a different answer when asked one time at a time
        return 1.0 - s

    def dalpha(self, s):
        return torch.full_like(s, -2.0 if self.defect == "velocity" else -1.0)


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("end", "alpha(1) = 0"),
        ("bump", "non-increasing"),
        ("nan", "alpha is finite"),
        ("velocity", "hazard identity"),
        ("batch_dependent", "answers any t"),
    ],
)
def test_check_schedule_names_the_failing_property(defect, message):
    with pytest.raises(ConformanceError, match="schedule 'broken'") as info:
        check_schedule(Broken(defect))
    assert message in str(info.value)
    assert "fails at" in str(info.value) or "raised" in str(info.value)


class NegativeVelocity(WindowedSchedule):
    def velocity(self, t):
        return -super().velocity(t)


class LateWindows(Order):
    """Block windows, but broken in a way chosen by `defect`."""

    name = "late"

    def __init__(self, defect: str) -> None:
        super().__init__()
        self.defect = defect

    def forward_schedule(self, x, base, features=None):
        lo, hi = block_windows(x.shape[1], 2)
        if self.defect == "velocity":
            return NegativeVelocity(base, lo, hi)
        if self.defect == "not_masked_at_1":
            return WindowedSchedule(base, lo, hi + 0.5)  # still partly clean at t = 1
        raise RuntimeError("cannot build a schedule")


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("velocity", "velocity in [0.0, inf]"),
        ("not_masked_at_1", "alpha(1) = 0"),
        ("raises", "forward_schedule(x) raised RuntimeError"),
    ],
)
def test_check_order_names_the_failing_property(defect, message):
    base = registry.build("schedule", "linear")
    with pytest.raises(ConformanceError, match="order 'late'") as info:
        check_order(LateWindows(defect), base)
    assert message in str(info.value)


def test_check_position_schedule_reports_time_and_position():
    base = registry.build("schedule", "linear")
    lo, hi = block_windows(4, 2)
    with pytest.raises(ConformanceError, match=r"t=.*index") as info:
        check_position_schedule(NegativeVelocity(base, lo, hi), 4, who="custom")
    assert str(info.value).startswith("custom: velocity")


def test_check_order_takes_a_class_and_defaults_to_a_linear_base():
    check_order(registry.get("order", "block"))  # built with its default options
    with pytest.raises(ConformanceError, match="order 'late'"):
        check_order(LateWindows("velocity"))


@pytest.mark.parametrize("order", [o for o in ORDERS if registry.get("order", o).learned])
def test_check_order_asks_for_a_model_for_learned_orders(order):
    with pytest.raises(ValueError, match="model="):
        check_order(registry.get("order", order))


# -- oemdm check-plugin --------------------------------------------------------------------------
def test_check_plugin_command_passes_builtin_plugins(capsys):
    from oemdm_core.cli.main import main

    assert main(["check-plugin", "schedules"]) == 0
    out = capsys.readouterr().out
    for name in ("linear", "cosine", "polynomial"):
        assert f"schedule  {name}" in out
    assert "3 passed, 0 failed" in out
    assert main(["check-plugin", "order:block"]) == 0
    assert "check_order (schedule linear)" in capsys.readouterr().out


class NotMaskedAtOne(Broken):
    """α_b(1) = 0.1: never fully masked."""

    name = "not_masked_at_one"

    def __init__(self) -> None:
        super().__init__("end")


class BrokenPlugin:
    """A plugin registered by hand that supplies one bad schedule."""

    @staticmethod
    @hookimpl
    def register_schedules(register):
        register(NotMaskedAtOne)


def test_check_plugin_command_fails_on_a_broken_plugin(monkeypatch, capsys):
    import sys

    from oemdm_core import Registry
    from oemdm_core.cli.main import main

    fresh = Registry()
    fresh.register_plugin(BrokenPlugin(), name="broken_plugin")
    monkeypatch.setattr(sys.modules["oemdm_core.plugin.registry"], "registry", fresh)
    assert main(["check-plugin", "broken_plugin"]) == 1
    out = capsys.readouterr().out
    assert "schedule  not_masked_at_one" in out and "0 passed, 1 failed" in out
    assert "FAIL: schedule 'not_masked_at_one' (NotMaskedAtOne): alpha(1) = 0 fails at s=1" in out


def test_check_plugin_command_unknown_name_lists_plugins(capsys):
    from oemdm_core.cli.main import main

    assert main(["check-plugin", "schedulez"]) == 2
    err = capsys.readouterr().err
    assert "schedulez" in err and "did you mean 'schedules'" in err
    assert main(["check-plugin", "order:blok"]) == 2
    assert "did you mean 'block'" in capsys.readouterr().err
