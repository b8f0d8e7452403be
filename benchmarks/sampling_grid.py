"""L_T and generative perplexity on the uniform and the equal-reveal sampling grid (issue 19,
part 4), beside the continuous NELBO.

For each trained run (mdm, lomdm, genmd4 by default) and each T: the discrete-time bound L_T
on the test split for both grids, from simulated paths (`oemdm_core.nelbo.grid`; what
`oemdm eval --steps T --grid equal-reveal` reports, and on the uniform grid an unbiased
estimate of the L_T that `oemdm eval --steps T` reports, with lower variance), its gap to the
continuous NELBO (deterministic, as `oemdm eval`; paired over the same sequences), and samples of the `ancestral` sampler with the same T and
grid, scored by an AR judge trained on the same data (generative perplexity) and, for the
lookup-chain task, the fraction of valid chains.

    python benchmarks/sampling_grid.py --runs runs/grid            # mdm, lomdm, genmd4; judge ar
    python benchmarks/sampling_grid.py --runs runs/grid --models lomdm --steps 64

`--runs DIR` holds one `oemdm train` run per model (DIR/mdm, DIR/lomdm, …, DIR/ar); the
commands that trained them are in docs/benchmarks.md. One more model is defined here: the
fixed soft left-to-right order inside LoMDM's family (issue 19's table), α^i = 1 − t^{w_i}
with w geometric from c1 + c2 = 1.35 at the first position down to c1 − c2 = 0.05 at the
last, where the uniform grid leaves most late positions for its last step:

    python benchmarks/sampling_grid.py --runs runs/grid --train-soft 3000   # trains DIR/soft-l2r
    python benchmarks/sampling_grid.py --runs runs/grid --models soft-l2r
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import harness
import numpy as np
import torch
from lookup_chain_task import is_valid

from oemdm_core import Order, hookimpl, registry
from oemdm_core.interfaces import GRIDS
from oemdm_core.nelbo import discrete_nelbo_on_grid
from oemdm_core.runtime.checkpoint.restore import load_checkpoint
from oemdm_core.runtime.checkpoint.store import TOKENIZER_FILE, load_json
from oemdm_core.runtime.data_cache import build_data, eval_batches
from oemdm_core.runtime.evaluation.likelihood import evaluation_times
from oemdm_core.runtime.evaluation.sample_metrics import generative_perplexity


class SoftLeftToRight(Order):
    """Fixed α^i(t) = 1 − t^{w_i}, w geometric from `high` (position 0) to `low` (L − 1)."""

    name = "soft-l2r"
    times = "importance"  # power laws with w < ½: uniform t gives a heavy-tailed loss

    def forward_schedule(self, x, base, features=None):
        from oemdm_lomdm import PowerSchedule

        length = x.shape[1]
        w = torch.logspace(math.log10(1.35), math.log10(0.05), length, device=x.device)
        return PowerSchedule(w.expand(x.shape[0], length))


@hookimpl
def register_orders(register):
    register(SoftLeftToRight)


registry.register_plugin(sys.modules[__name__], name="sampling-grid-benchmark")


def train_soft(runs: Path, steps: int) -> None:
    """Train DIR/soft-l2r with the settings of the CLI runs (docs/benchmarks.md)."""
    from oemdm_core.runtime.experiment import load_config
    from oemdm_core.runtime.trainer import fit

    overrides = [
        f"data.dataset={{name: text-files, paths: [{runs / 'chain.txt'}]}}",
        "data.length=32",
        f"data.cache_dir={runs / 'cache'}",
        "model.backbone={name: transformer, preset: tiny, d_model: 64, n_layers: 2, n_heads: 2}",
        "model.order={name: soft-l2r}",
        f"training.steps={steps}",
        "training.batch_size=64",
        "training.lr=0.003",
        "training.warmup_steps=100",
        "training.eval_every=0",
        "training.checkpoint_every=0",
        "training.progress=false",
        "training.log_every=50",
        "training.device=cpu",
        "sampling.num_samples=0",
        "evaluation.split=test",
        "evaluation.max_sequences=128",
        f"training.run_dir={runs / 'soft-l2r'}",
    ]
    fit(load_config(overrides=overrides))


def parse_args(argv=None) -> argparse.Namespace:
    p = harness.new_parser(__doc__)
    p.add_argument("--runs", required=True, help="directory with one run per model")
    p.add_argument("--models", default="mdm,lomdm,genmd4", help="comma-separated run names")
    p.add_argument("--judge", default="ar", help="run name of the AR judge (same data)")
    p.add_argument("--steps", default="16,64,128", help="comma-separated T")
    p.add_argument("--sequences", type=int, default=128, help="test sequences evaluated")
    p.add_argument("--paths", type=int, default=4, help="L_T: simulated paths per sequence")
    p.add_argument("--continuous-times", type=int, default=32, help="continuous NELBO points")
    p.add_argument("--samples", type=int, default=128, help="samples per (model, T, grid)")
    harness.add_threads(p, default=1)
    p.add_argument("--train-soft", type=int, metavar="STEPS", help="train DIR/soft-l2r first")
    return harness.parse(p, argv)


def test_batches(run: Path, sequences: int):
    """(model, the run's test batches `[≤32, L]`, its decode) of a finished run."""
    model, cfg, _, ckpt = load_checkpoint(str(run))
    cfg = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"split": "test"})})
    data = build_data(cfg, registry, load_json(ckpt / TOKENIZER_FILE), splits=("evaluation",))
    return model.eval(), eval_batches(data.evaluation, 32, sequences), data.decode


@torch.no_grad()
def continuous_per_sequence(model, batches, points: int) -> torch.Tensor:
    """The deterministic continuous NELBO of every sequence, `[N]` nats (as `oemdm eval`)."""
    values = []
    for b, x in enumerate(batches):
        total = torch.zeros(x.shape[0], dtype=torch.float64)
        for j in range(points):
            t, weight = evaluation_times(x.shape[0], j, points, "deterministic")
            g = torch.Generator().manual_seed(b * 10_007 + j)
            total += model.nelbo(x, t=t, generator=g).total.double() * weight
        values.append(total / points)
    return torch.cat(values)


@torch.no_grad()
def bound_per_sequence(model, batches, steps: int, grid: str, paths: int) -> torch.Tensor:
    """L_T on `grid` of every sequence, `[N]` nats: the mean of `paths` simulated paths."""
    values = []
    for b, x in enumerate(batches):
        total = torch.zeros(x.shape[0], dtype=torch.float64)
        for j in range(paths):
            g = torch.Generator().manual_seed(b * 10_007 + j)
            total += discrete_nelbo_on_grid(model, x, steps, grid, g).total.double()
        values.append(total / paths)
    return torch.cat(values)


def mean_se(values: torch.Tensor, scale: float) -> tuple[float, float]:
    return float(values.mean()) / scale, float(values.std() / len(values) ** 0.5) / scale


def measure(args, name: str, judge) -> list[dict]:
    model, batches, decode = test_batches(Path(args.runs) / name, args.sequences)
    scale = model.length * math.log(2.0)  # nats per sequence → bits per token
    start = time.time()
    continuous = continuous_per_sequence(model, batches, args.continuous_times)
    nelbo, nelbo_se = mean_se(continuous, scale)
    rows = []
    for steps in [int(s) for s in args.steps.split(",")]:
        bounds = {}
        for grid in GRIDS:
            bound = bounds[grid] = bound_per_sequence(model, batches, steps, grid, args.paths)
            sampler = registry.build("sampler", "ancestral", steps=steps, grid=grid)
            drawn = sampler.sample(model, args.samples, generator=torch.Generator().manual_seed(0))
            gen = generative_perplexity(drawn.tokens, judge)
            valid = float(np.mean([is_valid(decode(r)) for r in drawn.tokens.tolist()]))
            rows.append(
                {
                    "model": name,
                    "T": steps,
                    "grid": grid,
                    **dict(zip(("L_T", "L_T_se"), mean_se(bound, scale), strict=True)),
                    # paired over the same sequences: the data's spread cancels
                    **dict(zip(("gap", "gap_se"), mean_se(bound - continuous, scale), strict=True)),
                    "nelbo": nelbo,
                    "nelbo_se": nelbo_se,
                    "gen_ppl": gen.perplexity,
                    "valid": valid,
                    "nfe": drawn.nfe,
                }
            )
            print(row_line(rows[-1]), flush=True)
        # the same sequences and path seeds on both grids: a paired difference
        diff, diff_se = mean_se(bounds["equal-reveal"] - bounds["uniform"], scale)
        print(f"# {name} T={steps}: equal-reveal − uniform {diff:+.4f} ± {diff_se:.4f}", flush=True)
    print(f"# {name}: {time.time() - start:.0f} s", flush=True)
    return rows


HEADER = harness.table_head(
    ["model", "T", "grid", "L_T (bits/tok)", "L_T − NELBO", "NELBO (continuous)"]
    + ["gen-PPL (AR judge)", "valid chains", "NFE"]
)


def row_line(r: dict) -> str:
    return harness.table_row(
        [
            r["model"],
            r["T"],
            r["grid"],
            f"{r['L_T']:.3f} ± {r['L_T_se']:.3f}",
            f"{r['gap']:+.3f} ± {r['gap_se']:.3f}",
            f"{r['nelbo']:.3f} ± {r['nelbo_se']:.3f}",
            f"{r['gen_ppl']:.3f}",
            f"{r['valid']:.2f}",
            f"{r['nfe']:.0f}",
        ]
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.train_soft:
        train_soft(Path(args.runs), args.train_soft)
        return 0
    judge, _, _ = test_batches(Path(args.runs) / args.judge, 1)
    print(HEADER, flush=True)
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        rows += measure(args, name, judge)
    print("\n" + harness.run_header(__file__, argv))
    print(HEADER)
    for r in rows:
        print(row_line(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
