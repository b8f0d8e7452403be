"""The runnable examples under `examples/` run and print what they claim."""

from __future__ import annotations

import math
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from oemdm_core import registry

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MIX = EXAMPLES / "mix_components.py"


@pytest.fixture(scope="module")
def mix():
    """The example's namespace (its `run`, `Row` and `format_table`)."""
    return runpy.run_path(str(MIX), run_name="mix_components")


def test_mix_components_runs_as_a_script():
    proc = subprocess.run(
        [sys.executable, str(MIX), "--draws", "4", "--steps", "8"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=EXAMPLES.parent,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["order", "NELBO", "(nats/seq)"]
    printed = {line.split()[0] for line in lines[1:-1]}
    assert {"ar", "block", "mdm"} <= printed
    assert set(registry.available("order")) == printed
    assert "L·log V = 12.876 nats" in lines[-1]  # defaults V = 5, L = 8: 8·ln 5


@pytest.fixture(scope="module")
def default_rows(mix):
    """The example's rows with its default settings (fewer NELBO draws)."""
    return mix["run"](draws=4)


def test_every_order_gets_a_row_with_a_finite_nelbo(default_rows):
    rows = default_rows
    assert [r.order for r in rows] == registry.available("order")
    built = [r for r in rows if not r.skipped]
    assert {"ar", "block", "mdm"} <= {r.order for r in built}
    for r in built:
        assert math.isfinite(r.nelbo) and r.nelbo > 0 and r.stderr > 0
        assert r.bits_per_token == pytest.approx(r.nelbo / (8 * math.log(2)))
        assert len(r.sample) == 8 and all(0 <= v < 5 for v in r.sample)
        assert min(r.generation_order) >= 0  # every position was generated (none fixed)
        if r.order in ("ar", "block", "mdm"):  # fixed orders: no velocity-matching term
            assert r.velocity_matching == 0.0


def test_generation_orders_follow_the_order(default_rows):
    rows = {r.order: r for r in default_rows}  # L = 8, T = 16 steps
    ar = rows["ar"].generation_order
    assert ar == sorted(ar) and len(set(ar)) == 8  # strictly left to right
    block = rows["block"].generation_order  # default block_size 4: two blocks
    assert max(block[:4]) < min(block[4:])


def test_samples_are_random_draws(default_rows):
    # An untrained model is close to uniform over V = 5 tokens: 24 sampled tokens must not
    # all be equal (they were, when the Gumbel noise was NaN and argmax always returned 0).
    tokens = [v for r in default_rows if r.order in ("ar", "block", "mdm") for v in r.sample]
    assert len(set(tokens)) > 1


def test_orders_that_need_options_are_reported_not_hidden(mix):
    # L = 6 is not divisible by block's default block_size 4: the row says why.
    rows = {r.order: r for r in mix["run"](draws=1, length=6, vocab_size=3, steps=6)}
    assert "not divisible by block_size 4" in rows["block"].skipped
    assert not rows["ar"].skipped and not rows["mdm"].skipped
    table = mix["format_table"](list(rows.values()), 6, 3)
    assert "block    skipped: " in table
    assert f"L·log V = {6 * math.log(3):.3f} nats" in table.splitlines()[-1]
