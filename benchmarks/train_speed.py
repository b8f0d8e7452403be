"""Training throughput per order × estimator, against a plain causal transformer LM.

For each configuration: step time (forward + backward + AdamW), tokens/s (clean tokens of
the batch per second), peak memory, and MFU = model FLOPs per second ÷ the matmul rate
measured in the same run (bf16 8192³ on GPU; float32 on CPU, where bf16 matmuls are not
the relevant peak — the table says which).

Memory: on GPU the peak memory allocated by tensors during the timed steps (weights,
optimizer state and activations); on CPU the bytes of activations saved for backward in
one step (the part that differs between configurations; RSS on a shared machine is not).

Model FLOPs: every backbone call is recorded with a forward hook (batch B, length L_c,
grad or not); a call costs (3 if it is differentiated, else 1) × [2·N·B·L_c + 4·n_layers·d·B·L_c²],
N = matmul parameters (attention, MLP, output head; embeddings excluded). Attention is counted
in full (no discount for causal or block masks), as in the PaLM MFU convention; the 2L pass of
the vectorised block estimator counts at length 2L.

    python benchmarks/train_speed.py --quick                 # CPU, preset small (minutes)
    python benchmarks/train_speed.py --device cuda           # GPU: preset base, L = 1024,
                                                             # bf16 autocast, torch.compile
Targets (checked at the end): AR teacher forcing ≥ 0.9× the plain LM's tokens/s;
block-vectorized step ≤ 2.3× the AR (teacher forcing) step; LoMDM (K = 2, defaults) step ≤ 2.4× the
MDM step; on GPU, MDM at ≥ 45% MFU.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import harness
import torch
import torch.nn.functional as F
from torch import nn

from oemdm_core import OeMDM


@dataclass
class Result:
    config: str
    step_ms: float
    tokens_per_s: float
    peak_mb: float
    model_gflops_per_step: float
    mfu: float


# -- reference: a minimal causal LM (nanoGPT-style) of the same size -------------------------
class PlainBlock(nn.Module):
    def __init__(self, d: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(d, mlp_ratio * d), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * d, d)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, n, d = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True
        )  # [B, H, L, Dh]
        h = h + self.proj(y.transpose(1, 2).reshape(b, n, d))
        return h + self.mlp(self.norm2(h))


class PlainCausalLM(nn.Module):
    """Token + learned position embeddings, pre-norm blocks, untied head; next-token CE."""

    def __init__(self, vocab: int, length: int, d: int, layers: int, heads: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(length, d)
        self.blocks = nn.ModuleList(PlainBlock(d, heads, 4) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tok(x) + self.pos.weight[: x.shape[1]]  # [B, L, D]
        for block in self.blocks:
            h = block(h)
        logits = self.head(self.norm(h))[:, :-1]  # [B, L−1, V] predicts x[:, 1:]
        return F.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten())


# -- measurement helpers ------------------------------------------------------------------
def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, reps: int, clock) -> float:
    """FLOP/s of an n×n×n matrix product (2n³ FLOPs each), after one warm-up."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    start = clock()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (clock() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float:
    """Peak memory allocated by tensors on a CUDA device, MB."""
    return torch.cuda.max_memory_allocated(device) / 2**20


def matmul_params(d: int, layers: int, vocab: int, mlp_ratio: int = 4) -> int:
    return layers * (4 * d * d + 2 * mlp_ratio * d * d) + d * vocab


class FlopCounter:
    """Forward hook on a backbone: sums the model FLOPs of every call (see module docstring)."""

    def __init__(self, module: nn.Module, d: int, layers: int, vocab: int) -> None:
        self.n, self.d, self.layers, self.flops = matmul_params(d, layers, vocab), d, layers, 0.0
        self.handle = module.register_forward_hook(self.hook)

    def add(self, batch: int, length: int, grad: bool) -> None:
        per_pass = 2 * self.n * batch * length + 4 * self.layers * self.d * batch * length**2
        self.flops += (3 if grad else 1) * per_pass

    def hook(self, module, args, output) -> None:
        tokens = args[0]
        self.add(tokens.shape[0], tokens.shape[1], torch.is_grad_enabled())


def configurations(block_size: int) -> list[tuple[str, dict | None, str, dict]]:
    """(label, order, estimator, backbone options); order None = the plain causal LM."""
    blocks = {"attention": "block_causal", "block_size": block_size}
    return [
        ("plain causal LM (reference)", None, "", {}),
        ("mdm / generic", {"name": "mdm"}, "generic", {"attention": "bidirectional"}),
        ("ar / generic", {"name": "ar"}, "generic", {"attention": "causal"}),
        ("ar / teacher-forcing", {"name": "ar"}, "teacher-forcing", {"attention": "causal"}),
        (
            f"block({block_size}) / generic",
            {"name": "block", "block_size": block_size},
            "generic",
            blocks,
        ),
        (
            f"block({block_size}) / block-vectorized",
            {"name": "block", "block_size": block_size},
            "block-vectorized",
            blocks,
        ),
        (
            "lomdm K=2 / generic",
            {"name": "lomdm", "K": 2},
            "generic",
            {"attention": "bidirectional"},
        ),
        (
            "lomdm K=2 block schedulers / generic",
            {"name": "lomdm", "K": 2, "scheduler": "block"},
            "generic",
            {"attention": "bidirectional"},
        ),
        (
            "lomdm K=2 no stop-gradient, linear / generic",
            {"name": "lomdm", "K": 2, "scheduler": "linear", "stop_gradient": False},
            "generic",
            {"attention": "bidirectional"},
        ),
    ]


@dataclass
class Bench:
    """One prepared configuration: a training step closure and its model FLOPs per step."""

    label: str
    step: Callable[[], None]
    flops: float
    peak_mb: float = float("nan")


def prepare(args, label, order, estimator, backbone, device) -> Bench:
    """Build the model and optimizer, count FLOPs on one eager step, compile if asked."""
    torch.manual_seed(0)
    d, layers, heads = {"tiny": (32, 2, 2), "small": (256, 4, 4), "base": (768, 12, 12)}[
        args.preset
    ]
    if order is None:
        model = PlainCausalLM(args.vocab, args.length, d, layers, heads).to(device)
        net = model
        compute_loss = lambda x, g: model(x)  # noqa: E731
    else:
        model = OeMDM.from_config(
            {
                "vocab_size": args.vocab,
                "length": args.length,
                "backbone": {"name": "transformer", "preset": args.preset, **backbone},
                "order": order,
                "schedule": {"name": "linear"},
                "estimator": {"name": estimator},
            }
        ).to(device)
        net = model.backbone
        compute_loss = lambda x, g: model.nelbo(x, generator=g).total.mean() / args.length  # noqa: E731
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda" or None)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    )
    g = torch.Generator(device=device).manual_seed(0)
    data = torch.randint(0, args.vocab, (args.batch, args.length), device=device, generator=g)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = compute_loss(data, g)
        loss.backward()
        optimizer.step()

    # Count model FLOPs on one eager step (hooks inside a compiled module are not reliable).
    counter = FlopCounter(net, d, layers, args.vocab)
    step()
    counter.handle.remove()
    if order is None:  # the plain LM is counted directly: one differentiated pass
        counter.flops = 0.0
        counter.add(args.batch, args.length, True)
    if args.compile:
        net.compile()
    return Bench(label, step, counter.flops)


def warm_up(bench: Bench, args, device: torch.device) -> None:
    """Untimed steps; on CPU the last one also measures the activations saved for backward."""
    cpu = device.type == "cpu"
    for _ in range(max(args.warmup - cpu, 0)):
        bench.step()
    if not cpu:
        return
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        bench.step()
    bench.peak_mb = sum(saved.values()) / 2**20


def result(bench: Bench, elapsed: float, args, rate: float) -> Result:
    return Result(
        config=bench.label,
        step_ms=elapsed * 1e3,
        tokens_per_s=args.batch * args.length / elapsed,
        peak_mb=bench.peak_mb,
        model_gflops_per_step=bench.flops / 1e9,
        mfu=bench.flops / elapsed / rate,
    )


def run_gpu(args, configs, device, rate) -> Iterator[Result]:
    """One configuration at a time; mean over back-to-back steps; peak allocated memory."""
    for label, order, estimator, backbone in configs:
        bench = prepare(args, label, order, estimator, backbone, device)
        warm_up(bench, args, device)
        reset_peak(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            bench.step()
        sync(device)
        elapsed = (time.perf_counter() - start) / args.steps
        bench.peak_mb = peak_mb(device)
        yield result(bench, elapsed, args, rate)
        del bench
        torch.cuda.empty_cache()


def run_cpu(args, configs, device, rate) -> Iterator[Result]:
    """All configurations built first, then timed round-robin (one step of each in turn),
    so the load of a shared machine hits them alike; the median step of each is reported,
    on the clock chosen by --clock (process CPU time by default, see `main`)."""
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    benches = [prepare(args, *config, device) for config in configs]
    for bench in benches:
        warm_up(bench, args, device)
    times: dict[str, list[float]] = {bench.label: [] for bench in benches}
    for _ in range(args.steps):
        for bench in benches:
            start = clock()
            bench.step()
            times[bench.label].append(clock() - start)
    for bench in benches:
        yield result(bench, statistics.median(times[bench.label]), args, rate)


def check_targets(results: dict[str, Result], device: torch.device, block_size: int) -> list[str]:
    lines = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    plain, tf = results.get("plain causal LM (reference)"), results.get("ar / teacher-forcing")
    if plain and tf:
        ratio = tf.tokens_per_s / plain.tokens_per_s
        lines.append(
            f"AR teacher forcing tokens/s = {ratio:.2f}× plain LM (target ≥ 0.9): {verdict(ratio >= 0.9)}"
        )
    bv = results.get(f"block({block_size}) / block-vectorized")
    if bv and tf:
        ratio = bv.step_ms / tf.step_ms
        lines.append(
            f"block-vectorized step = {ratio:.2f}× AR step (target ≤ 2.3): {verdict(ratio <= 2.3)}"
        )
    lo, mdm = results.get("lomdm K=2 / generic"), results.get("mdm / generic")
    if lo and mdm:
        ratio = lo.step_ms / mdm.step_ms
        lines.append(
            f"LoMDM K=2 step = {ratio:.2f}× MDM step (target ≤ 2.4): {verdict(ratio <= 2.4)}"
        )
    if mdm:
        if device.type == "cuda":
            lines.append(
                f"MDM MFU = {mdm.mfu:.1%} (target ≥ 45% on an H100): {verdict(mdm.mfu >= 0.45)}"
            )
        else:
            lines.append("MDM MFU target (≥ 45%) applies to an H100 only: not checked on CPU")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = harness.new_parser(__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--quick", action="store_true", help="few steps, short sequences (CPU)")
    parser.add_argument("--preset", choices=["tiny", "small", "base"], default=None)
    parser.add_argument("--length", type=int, default=None, help="L (default 1024 GPU, 128 CPU)")
    parser.add_argument("--batch", type=int, default=None, help="batch (default 16 GPU, 8 CPU)")
    parser.add_argument("--vocab", type=int, default=None, help="V (default 50304 GPU, 256 CPU)")
    parser.add_argument("--block-size", type=int, default=16, help="block order's B'")
    parser.add_argument("--steps", type=int, default=None, help="timed steps")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--matmul-size", type=int, default=None, help="n of the n³ rate probe")
    harness.add_threads(parser)  # CPU runs: default 1 (see --clock)
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="cpu",
        help="CPU runs: time steps by process CPU time (default; stable on a shared machine, "
        "use with 1 thread) or wall time. GPU runs always use wall time.",
    )
    parser.add_argument("--only", default=None, help="comma-separated substrings of configs")
    harness.add_json(parser)
    args = harness.parse(parser, argv)

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error(
            "--device cuda requested but CUDA is not available; run on a GPU or use --device cpu"
        )
    if not cuda and (args.bf16 or args.compile):
        print(
            "note: --bf16/--compile are GPU options; on CPU they run (CPU autocast, inductor) "
            "but the CPU numbers in docs/benchmarks.md use float32 eager",
            file=sys.stderr,
        )
    args.preset = args.preset or ("base" if cuda else "small")
    args.length = args.length or (1024 if cuda else (64 if args.quick else 128))
    args.batch = args.batch or (16 if cuda else (4 if args.quick else 8))
    args.vocab = args.vocab or (50304 if cuda else 256)
    args.steps = args.steps or (20 if cuda else (6 if args.quick else 10))
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 2)
    args.bf16 = cuda if args.bf16 is None else args.bf16
    args.compile = cuda if args.compile is None else args.compile
    matmul_n = args.matmul_size or (8192 if cuda else 2048)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    if not cuda:
        torch.set_num_threads(args.threads or 1)
    clock = time.process_time if not cuda and args.clock == "cpu" else time.perf_counter
    rate_dtype = torch.bfloat16 if cuda else torch.float32
    rate = matmul_rate(device, rate_dtype, matmul_n, 20 if cuda else 3, clock)
    name = (
        torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine()
    )
    print(harness.run_header(__file__, argv, harness.machine(device=args.device)))
    print(
        f"device {name}; matmul {str(rate_dtype).replace('torch.', '')} {matmul_n}³: "
        f"{rate / 1e12:.3f} TFLOP/s"
    )
    print(
        f"preset {args.preset}, L = {args.length}, batch {args.batch}, V = {args.vocab}, "
        f"block {args.block_size}, bf16 {args.bf16}, compile {args.compile}, "
        f"{args.warmup} warm-up + {args.steps} timed steps, "
        f"{'wall' if cuda else args.clock} clock\n"
    )
    results: dict[str, Result] = {}
    memory = "peak mem (MB)" if cuda else "saved activations (MB)"
    columns = ["config", "step (ms)", "tokens/s", memory, "model GFLOP/step", "MFU"]
    print(harness.table_head(columns, ["", *["right"] * 5]))
    configs = [
        config
        for config in configurations(args.block_size)
        if not args.only or any(part in config[0] for part in args.only.split(","))
    ]
    runner = run_gpu if cuda else run_cpu
    for r in runner(args, configs, device, rate):
        results[r.config] = r
        cells = [r.config, f"{r.step_ms:.1f}", f"{r.tokens_per_s:,.0f}", f"{r.peak_mb:,.1f}"]
        cells += [f"{r.model_gflops_per_step:,.1f}", f"{r.mfu:.1%}"]
        print(harness.table_row(cells), flush=True)
    print()
    for line in check_targets(results, device, args.block_size):
        print(line)
    if args.json:
        harness.write_results(
            args.json,
            {
                "device": name,
                "matmul_tflops": rate / 1e12,
                "matmul_dtype": str(rate_dtype),
                "settings": {k: v for k, v in vars(args).items() if k != "json"},
                "results": [asdict(r) for r in results.values()],
            },
        )
    return 0 if results and not math.isnan(rate) else 1


if __name__ == "__main__":
    raise SystemExit(main())
