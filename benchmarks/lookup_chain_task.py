"""Synthetic order task with a known answer: a chain that is a lookup at every step left to
right, and needs inference over the rest of the sequence in any other order.

Each sequence is 16 pairs (r_k, y_k), L = 32 characters:

    r_1 y_1 r_2 y_2 … r_16 y_16,   r_k ~ U{a..h} (fresh),   y_k = T[y_{k−1}, r_k] ∈ {A..H}

with y_0 = A and T a fixed random 8 × 8 table (a random function of y_{k−1} for every r: many
to one, so the chain is not invertible, and the fresh r_k keep it from collapsing into a cycle).
The entropy is 16·3 bits per sequence = 1.5 bits/char, reached by an exact model of any order.
What each order must compute differs:
- left to right (AR): r_k costs its 3 bits, and y_k is a lookup of the two positions just
  before it (offsets −1 and −2), so it costs nothing once T is learned;
- right to left: y_{k−1} given (r_k, y_k) is a posterior over the preimages of y_k, which
  needs the marginal of y_{k−1} (a function of the whole prefix law);
- random order (MDM): a masked y_k whose left neighbours are masked too is T composed over
  the gap back to the nearest visible y, a different function for every gap.
So an order that generates left to right (or every r first, then the y's left to right) makes
each step a lookup; the question is whether LoMDM finds such an order by itself.

Reported per model: test bits/char (unbiased Monte Carlo NELBO ± its SE) against 1.5, the
fraction of valid samples, and the generation order's Spearman correlation with position
(over all positions and over the y's; +1 = left to right) from the model's own sampler.
LoMDM is trained with the paper's recipe (the defaults) and with each choice reverted:
`lomdm-grad` (no stop-gradient), `lomdm-time` (independent t per draw), `lomdm-block`
(the paper's block schedulers; `lomdm-linear` names the linear default explicitly),
`lomdm-tmin` (t ∈ [1e-3, 1]), `lomdm-uniform` (uniform t), `lomdm-is` (importance-sampled t
forced by the estimator, the default since 2026-12-02) and `lomdm-old` (grad and time
reverted, linear schedulers, uniform t: the code before issue 11).

    python benchmarks/lookup_chain_task.py --quick       # smoke test, about a minute
    python benchmarks/lookup_chain_task.py --settings steps --models ar,mdm,lomdm
    python benchmarks/lookup_chain_task.py                # every model, 2 seeds, both settings
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import harness
import numpy as np
import torch
from compare_orders import (
    score_samples,
    write_report,
)
from compare_orders_eval import importance_sampled
from compare_orders_models import (
    ModelSpec,
    Profile,
    experiment_config,
    load_trained,
    test_batches,
)
from compare_orders_report import Column, order_correlation
from order_task import mean_rank_plots, run_task, task_header, task_parser

from oemdm_core import registry

PAIRS = 16  # L = 2·PAIRS
SYMBOLS = 8
NUM_SEQUENCES = 20_000  # multiple of 20, so the 90/5/5 split falls on sequence boundaries
R_CHARS = "abcdefgh"
Y_CHARS = "ABCDEFGH"


def chain_table(seed: int = 7) -> np.ndarray:
    """T `[SYMBOLS, SYMBOLS]`: y_k = T[y_{k−1}, r_k], a random function of y for every r."""
    return np.random.default_rng(seed).integers(0, SYMBOLS, size=(SYMBOLS, SYMBOLS))


def make_sequences(num: int, pairs: int = PAIRS, seed: int = 12345) -> np.ndarray:
    """`[num, 2·pairs]` ints: r_k in [0, 8) at even positions, y_k in [8, 16) at odd ones."""
    table = chain_table()
    r = np.random.default_rng(seed).integers(0, SYMBOLS, size=(num, pairs))
    y = np.zeros((num, pairs), dtype=np.int64)
    previous = np.zeros(num, dtype=np.int64)
    for k in range(pairs):
        previous = table[previous, r[:, k]]
        y[:, k] = previous
    out = np.empty((num, 2 * pairs), dtype=np.int64)
    out[:, 0::2], out[:, 1::2] = r, y + SYMBOLS
    return out


def to_text(row: np.ndarray) -> str:
    """Ids of `make_sequences` → characters (r: a..h, y: A..H)."""
    return "".join(R_CHARS[v] if v < SYMBOLS else Y_CHARS[v - SYMBOLS] for v in row)


def write_corpus(path: Path, num: int = NUM_SEQUENCES) -> Path:
    """The sequences as one line (the packed protocol with L = 2·PAIRS recovers them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(to_text(row) for row in make_sequences(num)))
    return path


def is_valid(text: str, pairs: int = PAIRS) -> bool:
    """True if `text` is a chain: r's and y's alternate and every y_k = T[y_{k−1}, r_k]."""
    if len(text) != 2 * pairs:
        return False
    table, previous = chain_table(), 0
    for k in range(pairs):
        r, y = text[2 * k], text[2 * k + 1]
        if r not in R_CHARS or y not in Y_CHARS:
            return False
        previous = int(table[previous, R_CHARS.index(r)])
        if Y_CHARS.index(y) != previous:
            return False
    return True


def model_specs() -> dict[str, ModelSpec]:
    """The compared models; the LoMDM ablations revert one choice of the paper's recipe."""
    lomdm = {"name": "lomdm"}
    ablations = {
        "lomdm-grad": {"stop_gradient": False},
        "lomdm-time": {"shared_time": False},
        "lomdm-block": {"scheduler": "block"},
        "lomdm-linear": {"scheduler": "linear"},  # the default since 2026-12-01 (= lomdm)
        "lomdm-tmin": {"t_min": 1e-3},
        "lomdm-uniform": {"times": "uniform"},
        "lomdm-old": {
            "stop_gradient": False,
            "shared_time": False,
            "scheduler": "linear",
            "times": "uniform",
        },
    }
    specs = [
        ModelSpec("ar", {"name": "ar"}, {"attention": "causal"}, {"name": "ar"}),
        ModelSpec("mdm", {"name": "mdm"}),
        ModelSpec(
            "block4",
            {"name": "block", "block_size": 4},
            {"attention": "block_causal", "block_size": 4},
            {"name": "block", "steps": 4},
        ),
        ModelSpec("genmd4", {"name": "genmd4"}),
        ModelSpec("lomdm", lomdm),
        *(ModelSpec(key, {**lomdm, **change}) for key, change in ablations.items()),
        # importance-sampled t forced through the estimator (= the lomdm default since
        # 2026-12-02; before, the default was uniform t)
        ModelSpec("lomdm-is", lomdm, estimator={"name": "generic", "times": "importance"}),
    ]
    return {s.key: s for s in specs}


def select(specs: dict[str, ModelSpec], models: str | None) -> dict[str, ModelSpec]:
    if not models:
        return specs
    wanted = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in specs]
    if unknown or not wanted:
        raise SystemExit(f"--models: unknown {unknown}; valid: {', '.join(specs)}")
    return {k: v for k, v in specs.items() if k in wanted}


PROFILE = Profile(
    "lookup-chain",
    {"preset": "tiny", "d_model": 64, "n_layers": 2, "n_heads": 2},
    length=2 * PAIRS,
    batch_size=64,
    steps=1000,
    seeds=(0, 1),
    lr=3e-3,
    eval_sequences=128,
    num_times=8,
    bound_steps=2 * PAIRS,
    num_samples=64,
    sample_steps=2 * PAIRS,
)

COLUMNS = [
    Column("steps", "steps", 0),
    Column("passes/step", "passes_per_step", 2),
    Column("test bits/char (MC)", "test_bpt_mc"),
    Column("MC eval SE", "test_bpt_mc_stderr"),
    Column("valid samples", "valid_fraction", 2),
    Column("order corr. (all)", "order_corr", 2),
    Column("order corr. (y's)", "y_order_corr", 2),
    Column("w std", "w_std", 3),
    Column("ŵ off: bits/char", "off_bpt_mc"),
    Column("ŵ off: valid", "off_valid", 2),
    Column("ŵ off: order corr.", "off_order_corr", 2),
    Column("wall (min)", "wall_min", 1),
]


def reverse_off_metrics(
    row: dict, profile: Profile, spec: ModelSpec, out: Path, corpus: Path
) -> dict[str, float]:
    """The paper's c2 = 0 sampling ablation on a trained LoMDM: the reverse scheduler off
    (ŵ ≡ c1, random order with the same denoiser); test bits/char (MC) and the valid
    fraction and order correlation of its samples."""
    run_dir = Path(row["run_dir"])
    cfg = experiment_config(
        profile, spec, row["steps"], row["seed"], run_dir, corpus, out / "cache", False
    )
    data, batches = test_batches(cfg, run_dir, profile)
    model = load_trained(run_dir)
    model.order.reverse_scheduler_enabled = False
    bits, _ = importance_sampled(model, batches, profile.num_times, proposal=True)
    sampler = registry.build("sampler", "ancestral", steps=profile.sample_steps)
    g = torch.Generator().manual_seed(1000 + row["seed"])
    sample = sampler.sample(model, profile.num_samples, generator=g)
    texts = [data.decode(r) for r in sample.tokens.tolist()]
    return {
        "off_bpt_mc": bits,
        "off_valid": float(np.mean([is_valid(t) for t in texts])),
        "off_order_corr": order_correlation(sample.order),
    }


def add_task_metrics(
    rows: list[dict], profile: Profile, specs: dict[str, ModelSpec], out: Path, corpus: Path
) -> list[dict]:
    for row in rows:
        order = torch.tensor(row["sample_order"])
        row["valid_fraction"] = float(np.mean([is_valid(t) for t in row["sample_texts"]]))
        row["order_corr"] = order_correlation(order)
        row["y_order_corr"] = order_correlation(order, slice(1, None, 2))
        w = row.get("mean_w")
        row["w_std"] = None if w is None else float(np.std(w))
        off = {"off_bpt_mc": None, "off_valid": None, "off_order_corr": None}
        if row["model"].startswith("lomdm"):
            off = reverse_off_metrics(row, profile, specs[row["model"]], out, corpus)
        row.update(off)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = task_parser(
        __doc__,
        "lookup_chain",
        "1 seed, 60 steps (about a minute)",
        ",".join(model_specs()),
        "steps,matched",
    )
    args = harness.parse(p, argv)
    specs = select(model_specs(), args.models)
    quick = {"name": "lookup-chain-quick", "steps": 60, "seeds": (0,)}
    run = run_task(
        args, PROFILE, quick, specs, "lookup_chain", lambda d: write_corpus(d / "chain.txt")
    )
    rows = add_task_metrics(score_samples(run.results), run.profile, specs, run.out, run.corpus)
    header = task_header(
        f"lookup-chain order task ({PAIRS} pairs r_k y_k, y_k = T[y_k−1, r_k])",
        "lookup_chain_task.py",
        argv,
        run,
        f"{math.log2(SYMBOLS) / 2:.3f} bits/char (an exact model of any order reaches it)",
    )
    plots = mean_rank_plots(rows, run.settings, run.out)
    extra = [f"\nPlot: `{path.name}`" for path in plots.values()]
    report = write_report(run.out, rows, specs, run.settings, header, COLUMNS, extra, paper=False)
    print(report.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
