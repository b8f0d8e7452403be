"""Synthetic task where the generation order matters: does the learned order find the easy way?

Each sequence has L = 2n characters (n = 16): n random digits a_1..a_n, then their suffix sums
s_k = (a_k + a_{k+1} + … + a_n) mod 10 in natural order:

    a_1 a_2 … a_n | s_1 s_2 … s_n        (no separator; 32 digits)

The entropy is n·log2(10) bits per sequence = 1.661 bits per character; an exact model of any
order reaches it. The orders differ in what each step must compute:
- left to right (AR), s_1 = (Σ_k a_k) mod 10 is a sum of all n digits (a parity-like global
  function that small transformers learn slowly or never); every later digit is local:
  s_k = s_{k−1} − a_{k−1} reads the positions 1 and n + 1 back;
- sums right to left (s_n = a_n, s_k = a_k + s_{k+1}) or the sums first (s is a bijective image
  of a, so its digits are uniform, and a_k = s_k − s_{k+1}): every step reads two positions at
  fixed offsets, which a small transformer with rotary positions learns quickly.
So an order that generates the sums right to left, or the second half first, can reach the
entropy with a small network, while AR pays up to log2(10) = 3.32 bits per sequence
(0.10 bits/char) for the sum it cannot compute. We train the same models as
`compare_orders.py` (ar, mdm, block16 = the two halves, block4, genmd4, lomdm) and report bits
per character, the fraction of valid samples (sums consistent with the digits), and where each
model generates first (mean generation rank and the learned w per position).

    python benchmarks/synthetic_order_task.py --quick    # about 2 minutes on 2 CPU cores
    python benchmarks/synthetic_order_task.py            # 2000 steps, 2 seeds, both settings
                                                         # (about 24 min on 2 cores, 12 per setting)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import harness
import numpy as np
import torch
from compare_orders import (
    SETTINGS,
    score_samples,
    write_report,
)
from compare_orders_models import Profile, model_specs, select_specs
from compare_orders_report import (
    Column,
    _plt,
    average_rank,
    order_correlation,
    save_figure,
)
from order_task import mean_rank_plots, run_task, task_header, task_parser

DIGITS = 16  # n; L = 2n
NUM_SEQUENCES = 20_000  # multiple of 20, so the 90/5/5 split falls on sequence boundaries


def suffix_sums(a: np.ndarray) -> np.ndarray:
    """`[..., n]` digits → `[..., n]` suffix sums s_k = (a_k + … + a_n) mod 10."""
    return np.cumsum(a[..., ::-1], axis=-1)[..., ::-1] % 10


def make_sequences(num: int, digits: int = DIGITS, seed: int = 12345) -> np.ndarray:
    """`[num, 2·digits]` int array: random digits, then their suffix sums mod 10."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 10, size=(num, digits))
    return np.concatenate([a, suffix_sums(a)], axis=1)


def write_corpus(path: Path, num: int = NUM_SEQUENCES, digits: int = DIGITS) -> Path:
    """The sequences as one line of digits (packed protocol with L = 2·digits recovers them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join(map(str, row)) for row in make_sequences(num, digits)))
    return path


def is_valid(text: str, digits: int = DIGITS) -> bool:
    """True if `text` is 2·digits digits whose second half is the suffix sums of the first."""
    if len(text) != 2 * digits or not text.isdigit():
        return False
    a = np.array([int(c) for c in text[:digits]])
    return bool((suffix_sums(a) == np.array([int(c) for c in text[digits:]])).all())


def second_half_first(order: torch.Tensor, digits: int = DIGITS) -> float:
    """Fraction of samples whose second half has a lower mean generation rank than the first
    half (`order: [N, 2·digits]`, step each position was un-masked)."""
    rank = average_rank(order)
    return float((rank[:, digits:].mean(-1) < rank[:, :digits].mean(-1)).float().mean())


def sums_order_correlation(order: torch.Tensor, digits: int = DIGITS) -> float:
    """Mean Spearman correlation between position and generation rank within the sums
    (`order: [N, 2·digits]`): +1 = sums left to right (AR, which meets the global sum first),
    −1 = right to left (every step local); 0 for orders that generate the sums in no
    particular direction (all at once, or the sums first at random)."""
    return order_correlation(order, slice(digits, None))


PROFILE = Profile(
    "synthetic",
    {"preset": "tiny", "d_model": 64, "n_layers": 2, "n_heads": 2},
    length=2 * DIGITS,
    batch_size=32,
    steps=2000,  # AR learns every local step by then (1.765 bits/char); see docs/benchmarks.md
    seeds=(0, 1),
    lr=3e-3,
    eval_sequences=64,
    num_times=8,
    bound_steps=2 * DIGITS,
    num_samples=32,
    sample_steps=2 * DIGITS,
)

COLUMNS = [
    Column("steps", "steps", 0),
    Column("passes/step", "passes_per_step", 0),
    Column("test bits/char (MC)", "test_bpt_mc"),
    Column("MC eval SE", "test_bpt_mc_stderr"),
    Column("det. grid", "test_bpt"),
    Column(f"L_T bits/char (T={2 * DIGITS}, MC)", "bound_bpt_mc"),
    Column("valid samples", "valid_fraction", 2),
    Column("2nd half generated first", "second_half_first", 2),
    Column("sums order corr.", "sums_order_corr", 2),
    Column("w(2nd) − w(1st)", "w_gap", 3),
    Column("wall (min)", "wall_min", 1),
]


def add_task_metrics(rows: list[dict]) -> list[dict]:
    for row in rows:
        row["valid_fraction"] = float(np.mean([is_valid(t) for t in row["sample_texts"]]))
        row["second_half_first"] = second_half_first(torch.tensor(row["sample_order"]))
        row["sums_order_corr"] = sums_order_correlation(torch.tensor(row["sample_order"]))
        w = row.get("mean_w")
        row["w_gap"] = None if w is None else float(np.mean(w[DIGITS:]) - np.mean(w[:DIGITS]))
    return rows


def plot_mean_w(rows: list[dict], setting: str, path: Path) -> Path | None:
    """Mean learned exponent w per position (first seed), LoMDM and GenMD4."""
    curves = {}
    for row in sorted(rows, key=lambda r: r["seed"]):
        if row["setting"] == setting and row.get("mean_w") and row["model"] not in curves:
            curves[row["model"]] = row["mean_w"]
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, w in curves.items():
        ax.plot(w, marker="o", ms=3, label=name)
    ax.axvline(DIGITS - 0.5, color="gray", ls="--", lw=1)
    ax.set_xlabel("position (digits | suffix sums)")
    ax.set_ylabel("mean exponent w (higher = earlier)")
    ax.set_title(f"learned priorities on test sequences ({setting})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    p = task_parser(
        __doc__,
        "synthetic_order",
        "1 seed, 80 steps (a few minutes)",
        "ar,mdm,block16,block4,genmd4,lomdm,lomdm-is",
        ",".join(SETTINGS),
    )
    args = harness.parse(p, argv)
    specs = select_specs(model_specs((DIGITS, 4)), args.models)
    quick = {"name": "synthetic-quick", "steps": 80, "seeds": (0,)}
    run = run_task(
        args, PROFILE, quick, specs, "synthetic_order", lambda d: write_corpus(d / "synthetic.txt")
    )
    rows = add_task_metrics(score_samples(run.results))
    entropy = DIGITS * math.log2(10) / (2 * DIGITS)
    header = task_header(
        f"synthetic order task: digits | suffix sums (n = {DIGITS})",
        "synthetic_order_task.py",
        argv,
        run,
        f"{entropy:.3f} bits/char (an exact model reaches it)",
    )
    plots = mean_rank_plots(rows, run.settings, run.out)
    extra = []
    for setting, rank_plot in plots.items():
        path = plot_mean_w(rows, setting, run.out / f"mean_w_{setting}.png")
        extra.append(f"\nPlots: `{rank_plot.name}`" + (f", `{path.name}`" if path else ""))
    report = write_report(run.out, rows, specs, run.settings, header, COLUMNS, extra, paper=False)
    print(report.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
