"""Sampling speed per sampler, with and without caches: tokens/s, network calls (NFE) and
peak memory, at L = 256 and 1024 with the `small` preset (randomly initialised weights:
speed does not depend on what the weights say; sample quality is not measured here).

Each configuration runs in a fresh subprocess so that its peak memory is its own: on CPU,
peak RSS during sampling minus RSS just before it (KV caches, activations, sampler state);
on GPU, torch.cuda.max_memory_allocated during sampling.

    python benchmarks/sample_speed.py --quick          # CPU, 1 sample, skips the slowest runs
    python benchmarks/sample_speed.py                  # CPU, 2 samples, every configuration
    python benchmarks/sample_speed.py --device cuda --preset base

Targets (checked at the end): `ar` with KV cache ≥ 5× the tokens/s of `ar` without it at
L = 1024; `block` with KV cache ≥ 3× uncached block sampling; cached `ancestral` with
T ≫ L makes at most one network call per distinct state (NFE ≤ number of steps at which the
batch state changed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import harness
import torch

from oemdm_core import OeMDM, registry

VOCAB, BLOCK = 256, 16

# name → (order, backbone options, sampler name, sampler options); `{L}` in steps is the length.
CONFIGS: dict[str, tuple[dict, dict, str, dict]] = {
    "ar +kv": ({"name": "ar"}, {"attention": "causal"}, "ar", {"cache": True}),
    "ar": ({"name": "ar"}, {"attention": "causal"}, "ar", {"cache": False}),
    "block(16) +kv, ancestral T=8/block": (
        {"name": "block", "block_size": BLOCK},
        {"attention": "block_causal", "block_size": BLOCK},
        "block",
        {"cache": True, "steps": 8},
    ),
    "block(16), ancestral T=8/block": (
        {"name": "block", "block_size": BLOCK},
        {"attention": "block_causal", "block_size": BLOCK},
        "block",
        {"cache": False, "steps": 8},
    ),
    "block(16) +kv, first-hitting": (
        {"name": "block", "block_size": BLOCK},
        {"attention": "block_causal", "block_size": BLOCK},
        "block",
        {"cache": True, "inner": "first-hitting"},
    ),
    "mdm first-hitting": ({"name": "mdm"}, {}, "first-hitting", {}),
    "mdm ancestral T=L/4": ({"name": "mdm"}, {}, "ancestral", {"steps": "L/4"}),
    "mdm ancestral +cache T=16L": ({"name": "mdm"}, {}, "ancestral", {"steps": "16L"}),
}
# Slow on CPU (one full bidirectional pass per event / per distinct state at L = 1024).
SLOW = {("mdm first-hitting", 1024), ("mdm ancestral +cache T=16L", 1024)}


def resolve(options: dict, length: int) -> dict:
    steps = options.get("steps")
    if isinstance(steps, str):
        factor = steps.replace("L", "")
        steps = length // int(factor[1:]) if factor.startswith("/") else int(factor or 1) * length
        options = {**options, "steps": steps}
    return options


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_one(name: str, length: int, samples: int, preset: str, device: str) -> dict:
    """Build the model, sample once, report timing, NFE and peak memory (this process)."""
    order, backbone, sampler_name, options = CONFIGS[name]
    options = resolve(options, length)
    torch.manual_seed(0)
    model = OeMDM.from_config(
        {
            "vocab_size": VOCAB,
            "length": length,
            "backbone": {"name": "transformer", "preset": preset, **backbone},
            "order": order,
            "schedule": {"name": "linear"},
        }
    ).to(device)
    model.eval()
    sampler = registry.build("sampler", sampler_name, **options)
    generator = torch.Generator(device=device).manual_seed(0)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = rss_mb()
    start = time.perf_counter()
    result = sampler.sample(model, samples, length=length, generator=generator)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return {
        "config": name,
        "L": length,
        "samples": samples,
        "seconds": seconds,
        "tokens_per_s": samples * length / seconds,
        "nfe": result.nfe,
        "changes": int(torch.unique(result.order[result.order >= 0]).numel()),
        "steps": options.get("steps"),
        "peak_mb": max(peak, 0.0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = harness.new_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="1 sample; skip the slowest runs")
    parser.add_argument("--full", action="store_true", help="include the slow CPU runs")
    parser.add_argument("--samples", type=int, default=None, help="sequences per run")
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--preset", default="small", choices=["tiny", "small", "base"])
    parser.add_argument("--device", default="cpu")
    harness.add_threads(parser, default=1)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), help="subset of configs")
    harness.add_json(parser)
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "L"), help=argparse.SUPPRESS)
    args = harness.parse(parser, argv)
    samples = args.samples or (1 if args.quick else 2)
    if args.one:
        out = run_one(args.one[0], int(args.one[1]), samples, args.preset, args.device)
        print(json.dumps(out))
        return 0

    skip_slow = args.device == "cpu" and not args.full
    results, skipped = [], []
    for length in args.lengths:
        for name in args.configs:
            if skip_slow and (name, length) in SLOW:
                skipped.append(f"{name} @ L={length}")
                continue
            cmd = [sys.executable, __file__, "--one", name, str(length), "--samples", str(samples)]
            cmd += [
                "--preset",
                args.preset,
                "--device",
                args.device,
                "--threads",
                str(args.threads),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(
                f"{r['config']:<38} L={r['L']:<5} {r['tokens_per_s']:>9.1f} tok/s "
                f"NFE {r['nfe']:>6} peak {r['peak_mb']:>7.1f} MB ({r['seconds']:.1f} s)",
                flush=True,
            )
    print()
    print(harness.run_header(__file__, argv, harness.machine(device=args.device)))
    print(
        f"preset {args.preset}, vocab {VOCAB}, device {args.device}, {args.threads} thread(s), "
        f"{samples} sample(s) per run, random weights\n"
    )
    columns = ["config", "L", "tokens/s", "NFE", "steps T", "batch-state changes", "peak MB"]
    rows = [
        [
            r["config"],
            r["L"],
            f"{r['tokens_per_s']:.1f}",
            r["nfe"],
            "" if r["steps"] is None else r["steps"],
            r["changes"],
            f"{r['peak_mb']:.1f}",
        ]
        for r in results
    ]
    print(harness.table(columns, rows))
    if skipped:
        print(f"\nskipped on CPU (pass --full): {', '.join(skipped)}")
    print()
    check_targets(results)
    if args.json:
        harness.write_results(args.json, results)
    return 0


def check_targets(results: list[dict]) -> None:
    def speed(config: str, length: int) -> float | None:
        for r in results:
            if r["config"] == config and r["L"] == length:
                return r["tokens_per_s"]
        return None

    for label, fast, slow, goal in (
        ("ar: KV cache vs none", "ar +kv", "ar", 5.0),
        (
            "block: KV cache vs none",
            "block(16) +kv, ancestral T=8/block",
            "block(16), ancestral T=8/block",
            3.0,
        ),
    ):
        for length in sorted({r["L"] for r in results}):
            a, b = speed(fast, length), speed(slow, length)
            if a is None or b is None:
                continue
            ratio = a / b
            verdict = "met" if ratio >= goal else "NOT met"
            print(f"target {label} at L={length}: {ratio:.1f}x (goal >= {goal}x): {verdict}")
    for r in results:
        if r["config"] == "mdm ancestral +cache T=16L":
            ok = r["nfe"] <= r["changes"]
            print(
                f"target cached ancestral T={r['steps']} at L={r['L']}: NFE {r['nfe']} <= "
                f"{r['changes']} batch-state changes: {'met' if ok else 'NOT met'}"
            )


if __name__ == "__main__":
    sys.exit(main())
