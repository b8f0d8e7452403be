"""What a user sees of a learned order while it trains (per-group gradient norms, the spread
of the exponents) and the inference-time ablation that switches its reverse scheduler off."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_model, tiny_run

from oemdm_core.cli import main
from oemdm_core.runtime.run_log import order_statistics


def test_order_statistics_sign_and_spread():
    left_first = torch.linspace(1.3, 0.1, 8).expand(3, -1)  # w falls with position
    stats = order_statistics(left_first)
    assert stats["order/w_position_corr"] == pytest.approx(-1.0)
    assert stats["order/w_mean"] == pytest.approx(0.7)
    assert stats["order/w_std"] == pytest.approx(float(left_first.double().std()))
    flat = order_statistics(torch.full((2, 8), 0.7))
    assert flat["order/w_position_corr"] == 0.0 and flat["order/w_std"] == pytest.approx(0.0)
    assert order_statistics(left_first.flip(-1))["order/w_position_corr"] == pytest.approx(1.0)


def test_training_logs_group_gradient_norms_and_order_statistics(tmp_path, capsys):
    overrides = tiny_run(tmp_path, "run", "model.order=lomdm")
    assert main(["train", *(a for o in overrides for a in ("--set", o))]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    logged = [r for r in rows if "train/grad_norm" in r]
    assert logged
    for row in logged:
        groups = [
            row[f"train/grad_norm/{g}"]
            for g in ("backbone", "forward_scheduler", "reverse_scheduler")
        ]
        assert all(g > 0 for g in groups)
        # the groups partition the parameters: their norms compose the total
        assert sum(g * g for g in groups) ** 0.5 == pytest.approx(row["train/grad_norm"], rel=1e-4)
        assert 0.05 < row["order/w_mean"] < 1.35 and row["order/w_std"] >= 0
        assert -1 <= row["order/w_position_corr"] <= 1


def test_fixed_orders_log_only_the_backbone_group(tmp_path):
    overrides = tiny_run(tmp_path, "run")
    assert main(["train", *(a for o in overrides for a in ("--set", o))]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    row = next(r for r in rows if "train/grad_norm" in r)
    assert "train/grad_norm/backbone" in row and "train/grad_norm/forward_scheduler" not in row
    assert not any(k.startswith("order/") for k in row)


def test_reverse_scheduler_off_is_random_order_with_c1():
    model = tiny_model({"name": "lomdm", "scheduler": "block"}, length=6)
    with torch.no_grad():  # a learned reverse scheduler that prefers some positions
        model.order.reverse_head.position.weight.normal_(
            0, 1.0, generator=torch.Generator().manual_seed(0)
        )
        model.order.reverse_head.head[-1].weight.mul_(100)
    z = torch.full((2, 6), model.mask_id)
    t = torch.full((2,), 0.5)
    learned = model.reverse_schedule(z, t).w.detach()
    assert float(learned.std()) > 0.05
    model.order.reverse_scheduler_enabled = False
    off = model.reverse_schedule(z, t).w
    torch.testing.assert_close(off, torch.full_like(off, model.order.options.c1))


@pytest.fixture
def lomdm_run(tmp_path):
    overrides = tiny_run(tmp_path, "run", "model.order=lomdm")
    assert main(["train", *(a for o in overrides for a in ("--set", o))]) == 0
    return tmp_path / "run"


def test_cli_reverse_scheduler_off_in_sample_and_eval(lomdm_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["sample", str(lomdm_run), "-n", "2", "--reverse-scheduler", "off"]) == 0
    assert capsys.readouterr().out.count("--- sample") == 2
    results = {}
    for choice in ("learned", "off"):
        path = tmp_path / f"{choice}.json"
        argv = ["eval", str(lomdm_run), "--reverse-scheduler", choice, "--json", str(path)]
        assert main([*argv, "--max-sequences", "2", "--num-times", "2"]) == 0
        results[choice] = json.loads(path.read_text())
    assert results["off"]["reverse_scheduler"] == "off"
    # the same denoiser and forward order, another reverse schedule: another bound
    assert results["off"]["bits_per_token"] != results["learned"]["bits_per_token"]


def test_cli_reverse_scheduler_off_needs_a_learned_reverse_scheduler(tmp_path, capsys):
    overrides = tiny_run(tmp_path, "run")
    assert main(["train", *(a for o in overrides for a in ("--set", o))]) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "run"), "--reverse-scheduler", "off"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--reverse-scheduler off: order 'mdm' has no learned reverse scheduler" in err
    assert len(err.splitlines()) == 1
