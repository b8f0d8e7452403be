"""benchmarks/lookup_chain_task.py: the chain's construction, its validity check, the order
correlation, and a tiny end-to-end run (with the reverse-scheduler-off ablation)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import lookup_chain_task as lc  # noqa: E402
from compare_orders_report import order_correlation  # noqa: E402


def test_every_y_is_a_lookup_of_the_two_positions_before_it():
    seqs = lc.make_sequences(200)
    table = lc.chain_table()
    r, y = seqs[:, 0::2], seqs[:, 1::2] - lc.SYMBOLS
    previous = np.concatenate([np.zeros((200, 1), dtype=int), y[:, :-1]], axis=1)
    assert (table[previous, r] == y).all()
    # the chain does not collapse: late y's still take many values
    assert len(set(y[:, -1].tolist())) >= lc.SYMBOLS - 2
    # T is many to one in y for some r (not invertible), so right to left is not a lookup
    assert any(len(set(table[:, k].tolist())) < lc.SYMBOLS for k in range(lc.SYMBOLS))


def test_validity_check_accepts_chains_and_rejects_a_changed_y():
    text = lc.to_text(lc.make_sequences(1)[0])
    assert lc.is_valid(text)
    y = text[5]
    other = next(c for c in lc.Y_CHARS if c != y)
    assert not lc.is_valid(text[:5] + other + text[6:])
    assert not lc.is_valid(text[:-1])
    assert not lc.is_valid(text[1:] + text[0])  # r and y swapped roles


def test_order_correlation_signs():
    n = 2 * lc.PAIRS
    assert order_correlation(torch.arange(n)[None]) == pytest.approx(1.0)
    assert order_correlation(torch.arange(n).flip(0)[None]) == pytest.approx(-1.0)
    assert order_correlation(torch.zeros(1, n, dtype=torch.long)) == pytest.approx(0.0)


def test_runs_end_to_end(tmp_path):
    out = tmp_path / "lc"
    args = ["--steps", "2", "--seeds", "0", "--models", "ar,lomdm", "--settings", "steps"]
    assert lc.main([*args, "--out", str(out), "--no-progress", "--workers", "1"]) == 0
    rows = {r["model"]: r for r in json.loads((out / "results.json").read_text())}
    assert rows["ar"]["order_corr"] == pytest.approx(1.0)  # AR generates left to right
    assert rows["ar"]["test_bpt_mc"] > 1.5  # above the entropy after 2 steps
    assert rows["lomdm"]["off_bpt_mc"] is not None and rows["ar"]["off_bpt_mc"] is None
    assert "lookup-chain order task" in (out / "results.md").read_text()
