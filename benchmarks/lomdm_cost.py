"""Cost of a LoMDM training step against MDM with the same backbone and batch.

For `mdm`, `lomdm` K=1 and `lomdm` K=2 (transformer preset `small` by default) this measures
one optimisation step (NELBO forward + backward + AdamW update):

- step time: median over `--steps` timed steps after one warm-up step, as wall-clock time
  and as process CPU time (all threads; less sensitive to other jobs on a shared machine);
- peak memory: on CUDA `torch.cuda.max_memory_allocated` during the timed steps; on CPU the
  growth of the peak resident set (`ru_maxrss`) over the resident set before the first
  step, each configuration in a fresh subprocess so peaks do not carry over;
- backbone passes per step, counted with a forward hook on the backbone: calls, and rows
  processed divided by the batch size (a call on B·K rows is K passes). Expected: 1 for mdm,
  1 + K for lomdm (one pass on the clean x for the features, K on the noisy z_t).

    python benchmarks/lomdm_cost.py [--batch 8] [--length 128] [--steps 3] [--device cpu]

Prints a table (Markdown).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import harness
import torch

from oemdm_core import OeMDM

CONFIGS = {
    "mdm": {"name": "mdm"},
    "lomdm K=1": {"name": "lomdm", "K": 1, "shared_time": False},
    "lomdm K=2": {"name": "lomdm", "K": 2},
}


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(config: str, args: argparse.Namespace) -> dict:
    """One configuration: step time (s), peak memory (MiB), backbone calls and passes."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = OeMDM.from_config(
        {
            "vocab_size": args.vocab_size,
            "length": args.length,
            "backbone": {"name": "transformer", "preset": args.preset},
            "order": CONFIGS[config],
            "schedule": {"name": "linear"},
        }
    ).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, args.vocab_size, (args.batch, args.length), device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    calls, rows = [0], [0]

    def count(module, inputs, output):
        calls[0] += 1
        rows[0] += inputs[0].shape[0]

    model.backbone.register_forward_hook(count)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model.nelbo(x, generator=generator).total.mean().backward()
        optimizer.step()

    step()  # warm-up (allocates optimizer state)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = current_rss_mib()
    calls[0] = rows[0] = 0
    times, cpu_times = [], []
    for _ in range(args.steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss_before
    return {
        "config": config,
        "step_s": statistics.median(times),
        "cpu_s": statistics.median(cpu_times),
        "peak_mib": peak,
        "calls": calls[0] / args.steps,
        "passes": rows[0] / (args.batch * args.steps),
    }


def main(argv: list[str] | None = None) -> int:
    parser = harness.new_parser(__doc__)
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "base"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per configuration.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = harness.parse(parser, argv)

    if args.worker:  # one configuration in this process; JSON on stdout
        print(json.dumps(measure(args.worker, args)))
        return 0

    results = []
    passthrough = list(argv if argv is not None else sys.argv[1:])
    for config in CONFIGS:
        if args.device == "cpu":  # fresh process: ru_maxrss is a per-process high-water mark
            out = subprocess.run(
                [sys.executable, __file__, *passthrough, "--worker", config],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
        else:
            results.append(measure(config, args))

    base = results[0]
    memory = "peak CUDA MiB" if args.device != "cpu" else "peak RSS growth MiB"
    print(harness.run_header(__file__, argv, harness.machine(device=args.device)))
    print(
        f"preset={args.preset} batch={args.batch} length={args.length} "
        f"V={args.vocab_size} device={args.device}\n"
    )
    columns = ["order", "step wall (s)", "× mdm", "step CPU (s)", "× mdm", memory]
    rows = [
        [
            r["config"],
            f"{r['step_s']:.3f}",
            f"{r['step_s'] / base['step_s']:.2f}",
            f"{r['cpu_s']:.3f}",
            f"{r['cpu_s'] / base['cpu_s']:.2f}",
            f"{r['peak_mib']:.0f}",
            f"{r['calls']:.0f}",
            f"{r['passes']:.0f}",
        ]
        for r in results
    ]
    print(harness.table([*columns, "backbone calls", "backbone passes"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
