"""Base schedules and per-position (windowed) schedules: formulas, velocities, edges."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from oemdm_core import WindowedSchedule, block_windows, registry
from oemdm_core.interfaces.position_schedule import as_time_column
from oemdm_core.testing import time_pairs, times

S = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)


def build(name, **options):
    return registry.build("schedule", name, **options)


@pytest.mark.parametrize(
    ("name", "options", "alpha", "velocity"),
    [
        ("linear", {}, lambda s: 1 - s, lambda s: 1 / s),
        (
            "cosine",
            {},
            lambda s: torch.cos(math.pi * s / 2),
            lambda s: (math.pi / 2) * torch.sin(math.pi * s / 2) / (1 - torch.cos(math.pi * s / 2)),
        ),
        ("polynomial", {"p": 2.0}, lambda s: 1 - s**2, lambda s: 2 / s),
        ("polynomial", {"p": 0.5}, lambda s: 1 - s**0.5, lambda s: 0.5 / s),
    ],
)
def test_closed_forms(name, options, alpha, velocity):
    schedule = build(name, **options)
    torch.testing.assert_close(schedule.alpha(S), alpha(S))
    ends = schedule.alpha(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert ends.tolist() == [1.0, 0.0]  # exactly, not up to rounding
    inner = S[1:]
    torch.testing.assert_close(schedule.velocity(inner), velocity(inner))
    assert float(schedule.velocity(S[:1])) == 0.0  # nothing is masked at s = 0
    # dalpha is the derivative of alpha (autograd check away from s = 0).
    s = inner.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(schedule.alpha(s).sum(), s)
    torch.testing.assert_close(schedule.dalpha(inner), grad)


@pytest.mark.parametrize("name", ["linear", "cosine", "polynomial"])
def test_one_minus_alpha_is_accurate_near_zero(name):
    schedule = build(name)
    s = torch.tensor([1e-9, 1e-6, 1e-3], dtype=torch.float64)
    exact = {
        "linear": s,
        "cosine": 2 * torch.sin(math.pi * s / 4) ** 2,
        "polynomial": s**2,
    }[name]
    torch.testing.assert_close(schedule.one_minus_alpha(s), exact, rtol=1e-9, atol=0)
    # The velocity stays finite and positive at tiny s.
    v = schedule.velocity(s)
    assert torch.isfinite(v).all() and (v > 0).all()


def test_block_windows_cover_the_unit_interval_left_to_right():
    lo, hi = block_windows(6, 2)
    torch.testing.assert_close(lo, torch.tensor([2, 2, 1, 1, 0, 0], dtype=torch.float64) / 3)
    torch.testing.assert_close(hi, torch.tensor([3, 3, 2, 2, 1, 1], dtype=torch.float64) / 3)
    with pytest.raises(ValueError, match="not divisible"):
        block_windows(5, 2)
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        block_windows(4, 0)


def test_windowed_schedule_values_and_velocity():
    base = build("linear")
    lo, hi = block_windows(4, 2)  # block 0: [0.5, 1], block 1: [0, 0.5]
    ws = WindowedSchedule(base, lo, hi)
    t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
    alpha = ws.alpha(t)
    expected_block0 = torch.tensor([1.0, 1.0, 1.0, 0.5, 0.0], dtype=torch.float64)
    expected_block1 = torch.tensor([1.0, 0.5, 0.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(alpha[:, 0], expected_block0)
    torch.testing.assert_close(alpha[:, 3], expected_block1)
    v = ws.velocity(t)
    # Inside a window the velocity is the base velocity over the window width: 1/(τ·w).
    torch.testing.assert_close(v[1, 2], torch.tensor(1 / (0.5 * 0.5), dtype=torch.float64))
    torch.testing.assert_close(v[3, 0], torch.tensor(1 / (0.5 * 0.5), dtype=torch.float64))
    assert float(v[1, 0]) == 0.0  # block 0 not started yet
    # At the shared edge t = 0.5 exactly one window is active (the left limit of block 1).
    assert float(v[2, 0]) == 0.0 and float(v[2, 2]) > 0.0
    with pytest.raises(ValueError, match="hi > lo"):
        WindowedSchedule(base, hi, lo)


@settings(max_examples=40, deadline=None)
@given(t=times(8), size=st.sampled_from([1, 2, 4]))
def test_at_most_one_block_is_partly_masked(t, size):
    ws = registry.build("order", "block", block_size=size).forward_schedule(
        torch.zeros(1, 8, dtype=torch.long), build("cosine")
    )
    alpha = ws.alpha(t)[0]
    partial = (alpha > 0) & (alpha < 1)
    blocks = set((torch.nonzero(partial).flatten() // size).tolist())
    assert len(blocks) <= 1
    # Earlier blocks are cleaner than later ones (generated first).
    assert bool((alpha[1:] <= alpha[:-1] + 1e-12).all())


@settings(max_examples=40, deadline=None)
@given(pair=time_pairs(4), name=st.sampled_from(["linear", "cosine", "polynomial"]))
def test_unmask_probability_matches_alpha(pair, name):
    s, t = pair
    ws = registry.build("order", "block", block_size=2).forward_schedule(
        torch.zeros(1, 4, dtype=torch.long), build(name)
    )
    prob = ws.unmask_probability(s, t)
    assert torch.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()
    masked_t = ws.one_minus_alpha(t)
    expected = (ws.alpha(s) - ws.alpha(t)) / masked_t.clamp_min(1e-300)
    where = masked_t > 1e-6
    torch.testing.assert_close(prob[where], expected[where], atol=1e-9, rtol=1e-6)
    assert (prob[masked_t == 0] == 0).all()  # nothing masked: nothing to un-mask


def test_time_arguments_accept_floats_scalars_and_batches():
    ws = registry.build("order", "mdm").forward_schedule(
        torch.zeros(3, 4, dtype=torch.long), build("linear")
    )
    assert ws.alpha(0.25).shape == (1, 4)
    assert ws.alpha(torch.tensor(0.25)).shape == (1, 4)
    assert ws.alpha(torch.full((3,), 0.25)).shape == (3, 4)
    assert ws.alpha(torch.full((3,), 0.25, dtype=torch.float32)).dtype == torch.float32
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        as_time_column(torch.zeros(2, 2), None)
    with pytest.raises(ValueError, match=r"shape \[3\], got \(2,\)"):
        as_time_column(torch.zeros(2), 3)
    with pytest.raises(TypeError, match="floating"):
        as_time_column(torch.zeros(2, dtype=torch.long), None)
