"""Soak test of training memory: a long run of a tiny config, RSS sampled as it goes.

Trains LoMDM (the default order: learned, so the order statistics and weight histograms
are logged too) with the `tiny` transformer for `--steps` steps, with evaluation and a
checkpoint every `--eval-every` steps, samples drawn from the training model at the same
steps (and at the end, as `oemdm train` does) and TensorBoard on. Every `--every` steps the
process's resident memory is read from /proc/self/status (VmRSS, and VmHWM: the peak so
far). Prints the table and the least-squares slope of RSS against step in MB per 1000
steps, over the samples from the first evaluation on (before it, the evaluation, sampling
and checkpoint buffers have not been allocated yet). Target: < 5 MB per 1000 steps.

    python benchmarks/soak_memory.py                 # 5000 steps (~15 min on 2 CPU cores)
    python benchmarks/soak_memory.py --steps 1000    # a quicker look
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import harness

from oemdm_core.runtime.data_cache import build_data
from oemdm_core.runtime.experiment import load_config
from oemdm_core.runtime.trainer import fit
from oemdm_core.runtime.training_run import draw_samples

TARGET_MB_PER_1000 = 5.0


def memory_mb() -> tuple[float, float]:
    """This process's (VmRSS, VmHWM) in MB, read from /proc/self/status (Linux)."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024  # kB -> MB
    return fields["VmRSS"], fields["VmHWM"]


def slope_per_1000(steps: list[int], values: list[float]) -> float:
    """Least-squares slope of `values` against `steps`, per 1000 steps."""
    n = len(steps)
    mean_s, mean_v = sum(steps) / n, sum(values) / n
    cov = sum((s - mean_s) * (v - mean_v) for s, v in zip(steps, values, strict=True))
    var = sum((s - mean_s) ** 2 for s in steps)
    return 1000 * cov / var


def main(argv: list[str] | None = None) -> int:
    p = harness.new_parser(__doc__)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--every", type=int, default=100, help="steps between RSS readings")
    p.add_argument("--eval-every", type=int, default=500, help="evaluation/checkpoint/samples")
    p.add_argument("--run-dir", default=None, help="default: a fresh temporary directory")
    harness.add_threads(p, default=1)
    args = harness.parse(p, argv)
    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="oemdm-soak-")) / "run"
    cfg = load_config(
        overrides=[
            "model.backbone={name: transformer, preset: tiny}",
            "data.length=32",
            f"training.steps={args.steps}",
            "training.batch_size=16",
            f"training.eval_every={args.eval_every}",
            f"training.checkpoint_every={args.eval_every}",
            "training.progress=false",
            f"training.run_dir={run_dir}",
            "evaluation.max_sequences=32",
            "sampling.num_samples=2",
            "sampling.sampler={name: ancestral, steps: 16}",
        ]
    )
    data = build_data(cfg, splits=())  # the tokenizer, to decode the samples
    rows: list[tuple[int, float, float]] = []

    def on_step(step: int, model) -> None:
        if step % args.eval_every == 0:
            model.eval()
            draw_samples(model, data, cfg)
            model.train()
        if step % args.every == 0:
            rows.append((step, *memory_mb()))

    start = time.perf_counter()
    fit(cfg, on_step=on_step)
    wall = time.perf_counter() - start
    print(harness.run_header(__file__, argv))
    print(f"soak: {args.steps} steps in {wall:.0f} s, run in {run_dir}\n")
    table = [[step, f"{rss:.1f}", f"{peak:.1f}"] for step, rss, peak in rows]
    print(harness.table(["step", "RSS (MB)", "peak RSS so far (MB)"], table))
    steady = [(s, r) for s, r, _ in rows if s >= args.eval_every]
    if len(steady) < 2:
        print("too few readings after the first evaluation for a slope")
        return 1
    slope = slope_per_1000([s for s, _ in steady], [r for _, r in steady])
    print(
        f"RSS slope from step {steady[0][0]}: {slope:+.2f} MB per 1000 steps "
        f"(target < {TARGET_MB_PER_1000}); final peak RSS {memory_mb()[1]:.0f} MB"
    )
    return 0 if slope < TARGET_MB_PER_1000 else 1


if __name__ == "__main__":
    raise SystemExit(main())
