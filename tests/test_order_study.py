"""benchmarks/order_study.py: the sign conventions of its order measures and a smoke run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import order_study as study  # noqa: E402


def test_order_measures_say_left_to_right_is_positive():
    decreasing = torch.linspace(1.3, 0.1, study.LENGTH)
    assert study.w_order_score(decreasing) == pytest.approx(1.0)
    assert study.w_order_score(decreasing.flip(0)) == pytest.approx(-1.0)
    assert study.sampled_order_corr(decreasing) > 0.4
    assert study.sampled_order_corr(decreasing.flip(0)) < -0.4
    flat = torch.full((study.LENGTH,), 0.7)
    assert abs(study.sampled_order_corr(flat)) < 0.02
    assert study.w_order_score(flat) == 0.0  # ties get their average rank


def test_content_orders_put_one_token_type_first():
    assert bool((study.exponents("y-first")[1::2] > study.exponents("y-first")[0::2]).all())
    assert bool((study.exponents("r-first")[0::2] > study.exponents("r-first")[1::2]).all())


def test_a_short_coadaptation_run_logs_the_order(tmp_path):
    model, trajectory = study.train(
        study.VARIANTS["pos-flat-lr30"], "lookup_chain", 0, steps=2, lr=3e-3, batch=4, log_every=1
    )
    assert [p["step"] for p in trajectory] == [0, 1, 2]
    assert trajectory[0]["w_std"] == pytest.approx(0.0, abs=1e-6)  # flat at the start
    assert trajectory[-1]["w_std"] > 0  # θ moved
    mean, se = study.nelbo_bpt(model, study.task_data("lookup_chain", 8, seed=1), draws=1)
    assert se > 0 and mean > study.ENTROPY_BPT  # an untrained model: far above the entropy
