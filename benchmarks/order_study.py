"""Why LoMDM's order does not pay: the order ceiling with the exact denoiser, the order
gradient on its own, and co-adaptation with a learning transformer (issue 19, parts 1–3).

Task: the lookup chain (`oemdm_tasks`, L = 32, V = 16, entropy 1.5 bits/token) and its
reversal. Data are drawn fresh from the task's HMM at every step (no finite training set);
the test set is 512 sequences from another seed. All NELBOs are unbiased Monte Carlo
estimates (importance-sampled t for power-law orders) in bits/token ± SE across sequences.

    python benchmarks/order_study.py ceiling              # fixed orders with the oracle
    python benchmarks/order_study.py oracle-train         # θ trained against the oracle
    python benchmarks/order_study.py coadapt --variants pos-flat,mdm --seeds 0,1 --steps 1000
    python benchmarks/order_study.py probe --steps 300    # θ-gradient at trained denoisers

Orders: `mdm`; `ar`; `block4`; `soft-ltr` / `soft-rtl` (positional exponents at NormSig's
largest spread, frozen); `geo-ltr` (w geometric from c1 + c2 down to c1 − c2, frozen: the
issue's "soft left-to-right inside LoMDM's family", outside NormSig's centred range);
`r-first` / `y-first` (content orders of the chain: every r (y) token before every y (r)).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import harness
import torch
from compare_orders_report import order_correlation
from oemdm_lomdm import PowerSchedule
from torch import Tensor

from oemdm_core import OeMDM, Order

LENGTH, SYMBOLS = 32, 8
VOCAB = 2 * SYMBOLS
BITS = LENGTH * math.log(2.0)  # nats per sequence → bits per token
ENTROPY_BPT = math.log2(SYMBOLS) / 2
TRANSFORMER = {"name": "transformer", "preset": "tiny", "d_model": 64, "n_layers": 2, "n_heads": 2}


class FixedExponents(Order):
    """α^i = 1 − t^{w_i} with a fixed exponent vector (a soft fixed order; no parameters)."""

    name = "fixed-exponents"
    times = "importance"  # w down to 0.05: uniform t has infinite variance for w < ½

    def __init__(self, w: Tensor) -> None:
        super().__init__()
        self.register_buffer("w", w.float())

    def forward_schedule(self, x, base, features=None):
        return PowerSchedule(self.w[: x.shape[1]].expand(x.shape[0], -1))

    def generation_weights(self, x, base, features=None):
        return self.w[: x.shape[1]].expand(x.shape[0], -1)


def exponents(kind: str, c1: float = 0.7, c2: float = 0.65) -> Tensor:
    """Fixed exponent vectors `[L]` of the named soft orders (module docstring)."""
    pos = torch.arange(LENGTH, dtype=torch.float64)
    if kind == "geo-ltr":
        return (c1 + c2) * ((c1 - c2) / (c1 + c2)) ** (pos / (LENGTH - 1))
    if kind in ("r-first", "y-first"):
        first = (pos % 2 == 0) if kind == "r-first" else (pos % 2 == 1)
        return torch.where(first, c1 + c2 * 0.499, c1 - c2 * 0.499)
    raise ValueError(kind)


def order_spec(name: str) -> dict | Order:
    specs = {
        "mdm": {"name": "mdm"},
        "ar": {"name": "ar"},
        "block4": {"name": "block", "block_size": 4},
        "soft-ltr": {"name": "positional", "init": "left_to_right", "init_scale": 30.0},
        "soft-rtl": {"name": "positional", "init": "right_to_left", "init_scale": 30.0},
    }
    return specs[name] if name in specs else FixedExponents(exponents(name))


def build(order, backbone: dict, task: str = "lookup_chain", seed: int = 0) -> OeMDM:
    torch.manual_seed(seed)
    if backbone["name"] == "oracle":
        backbone = {**backbone, "task": task, "symbols": SYMBOLS}
    if isinstance(order, Order):
        from oemdm_core import registry

        b = registry.build(
            "backbone",
            backbone["name"],
            vocab_size=VOCAB,
            max_length=LENGTH,
            **{k: v for k, v in backbone.items() if k != "name"},
        )
        return OeMDM(b, order, registry.build("schedule", "linear"), length=LENGTH)
    return OeMDM.from_config(
        {
            "vocab_size": VOCAB,
            "length": LENGTH,
            "backbone": backbone,
            "order": order,
            "schedule": {"name": "linear"},
        }
    )


def task_data(task: str, num: int, seed: int) -> Tensor:
    from oemdm_tasks import build_task

    return build_task(task, LENGTH, SYMBOLS).sample(num, torch.Generator().manual_seed(seed))


@torch.no_grad()
def grid_bpt(model: OeMDM, x: Tensor, steps: int, draws: int = 4, seed: int = 0):
    """L_T on the equal-reveal grid (simulated paths): mean and SE across sequences, bits/token."""
    from oemdm_core.nelbo.grid import discrete_nelbo_on_grid

    g = torch.Generator().manual_seed(seed)
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for _ in range(draws):
        total += discrete_nelbo_on_grid(model, x, steps, "equal-reveal", g).total.double()
    v = total / draws / BITS
    return float(v.mean()), float(v.std() / len(v) ** 0.5)


@torch.no_grad()
def nelbo_bpt(
    model: OeMDM,
    x: Tensor,
    draws: int = 16,
    steps: int | None = None,
    seed: int = 0,
    batch: int = 256,
) -> tuple[float, float]:
    """Mean and SE across sequences of the NELBO (or L_T), bits/token, `draws` per sequence."""
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    per_seq = []
    for chunk in x.split(batch):
        total = torch.zeros(chunk.shape[0], dtype=torch.float64)
        for _ in range(draws):
            total += model.nelbo(chunk, steps=steps, generator=g).total.double()
        per_seq.append(total / draws)
    model.train(was)
    v = torch.cat(per_seq) / BITS
    return float(v.mean()), float(v.std() / len(v) ** 0.5)


def w_order_score(w: Tensor) -> float:
    """−Spearman(w, position) of exponents `[L]`: +1 = generated left to right, 0 if flat
    (a larger w is generated earlier; ties get their average rank)."""
    return order_correlation((-w.detach().double())[None])


def sampled_order_corr(w: Tensor, num: int = 512, seed: int = 0) -> float:
    """Mean Spearman correlation of position with generation rank under the Plackett–Luce
    order of exponents `w` ([L] or [N, L]): forward mask times U^{1/w}, generated latest first."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(num, w.shape[-1], generator=g, dtype=torch.float64)
    mask_time = u.pow(1.0 / w.detach().double().expand(num, -1))
    return order_correlation(-mask_time)


def weights_of(model: OeMDM, x: Tensor) -> Tensor | None:
    with torch.no_grad():
        features = model.clean_features(x) if model.order.needs_features else None
        w = model.order.generation_weights(x, model.schedule, features)
    return None if w is None else w.detach()


# -- 1. the ceiling ----------------------------------------------------------------------------


def ceiling(args) -> list[dict]:
    rows = []
    names = args.orders.split(",")
    for task in args.tasks.split(","):
        x = task_data(task, args.sequences, seed=999)
        for name in names:
            model = build(order_spec(name), {"name": "oracle"}, task)
            row = {"task": task, "order": name}
            row["nelbo"], row["nelbo_se"] = nelbo_bpt(model, x, args.draws)
            for T in (16, 32, 64, 128):
                row[f"L_{T}"], row[f"L_{T}_se"] = nelbo_bpt(model, x, args.draws, steps=T)
            if name in args.equal_reveal.split(","):  # slow: T oracle calls per path
                row["ER_64"], row["ER_64_se"] = grid_bpt(model, x[:128], 64, draws=1)
            w = weights_of(model, x[:1])
            row["sampled_corr"] = None if w is None else sampled_order_corr(w[0])
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# -- 2. the order gradient on its own ----------------------------------------------------------


def oracle_train(args) -> list[dict]:
    """θ of a flat positional order trained against the oracle (held fixed), with the
    recipe's estimator, on the continuous NELBO and on L_T."""
    rows = []
    for task in ("lookup_chain", "reverse_lookup_chain"):
        for steps_T in (None, 16):
            model = build({"name": "positional"}, {"name": "oracle"}, task, seed=args.seed)
            opt = torch.optim.Adam([model.order.theta], lr=args.lr)
            g = torch.Generator().manual_seed(args.seed)
            grads = []
            for step in range(args.steps):
                x = task_data(task, args.batch, seed=10_000 * args.seed + step)
                loss = model.nelbo(x, steps=steps_T, generator=g).total.mean()
                opt.zero_grad()
                loss.backward()
                grads.append(model.order.theta.grad.clone())
                opt.step()
            grads = torch.stack(grads)
            w = model.order.exponents(LENGTH).detach()
            test = task_data(task, 256, seed=999)
            row = {
                "task": task,
                "objective": "L" if steps_T is None else f"L_{steps_T}",
                "w_order_score": w_order_score(w),
                "sampled_corr": sampled_order_corr(w),
                "w_std": float(w.std()),
                "grad_mean_over_se": float(
                    (grads.mean(0) / (grads.std(0) / len(grads) ** 0.5)).abs().max()
                ),
                "L_16": nelbo_bpt(model, test, 4, steps=16)[0],
                "L": nelbo_bpt(model, test, 4)[0],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# -- 3. co-adaptation with a learning transformer ----------------------------------------------


@dataclass
class Variant:
    order: dict | str
    theta_lr: float = 1.0  # multiple of the backbone's lr for the order's parameters
    frozen_order: bool = False
    anneal_c2: float = 0.0  # c2 grows linearly from 0 over this fraction of the steps
    backbone: dict | None = None  # options added to the transformer's


VARIANTS = {
    "mdm": Variant({"name": "mdm"}),
    "pos-flat": Variant({"name": "positional"}),
    "pos-flat-lr30": Variant({"name": "positional"}, theta_lr=30.0),
    "pos-flat-K8": Variant({"name": "positional", "K": 8}),
    "pos-log-lr30": Variant({"name": "positional", "spread": "log"}, theta_lr=30.0),
    "pos-ltr-init": Variant({"name": "positional", "init": "left_to_right", "init_scale": 30.0}),
    "soft-ltr": Variant("soft-ltr", frozen_order=True),
    "geo-ltr": Variant("geo-ltr", frozen_order=True),
    "y-first": Variant("y-first", frozen_order=True),
    "r-first": Variant("r-first", frozen_order=True),
    "lomdm": Variant({"name": "lomdm"}),
    "lomdm-K8": Variant({"name": "lomdm", "K": 8}),
    "lomdm-lr30": Variant({"name": "lomdm"}, theta_lr=30.0),
    "lomdm-c2anneal": Variant({"name": "lomdm"}, anneal_c2=0.5),
    "lomdm-tcond": Variant({"name": "lomdm"}, backbone={"time_conditioning": True}),
    "lomdm-posbias": Variant({"name": "lomdm", "position_bias": True}),
    "lomdm-posbias-lr30": Variant({"name": "lomdm", "position_bias": True}, theta_lr=30.0),
    "lomdm-posbias-log-lr30": Variant(
        {"name": "lomdm", "position_bias": True, "spread": "log"}, theta_lr=30.0
    ),
    "lomdm-log": Variant({"name": "lomdm", "spread": "log"}),
    "lomdm-block": Variant({"name": "lomdm", "scheduler": "block"}),  # absolute position in g_φ
    "pos-c2anneal": Variant({"name": "positional"}, anneal_c2=0.5),
    "genmd4": Variant({"name": "genmd4"}),
}


def train(
    variant: Variant,
    task: str,
    seed: int,
    steps: int,
    lr: float,
    batch: int,
    log_every: int = 50,
    on_log=None,
):
    order = variant.order if isinstance(variant.order, dict) else order_spec(variant.order)
    model = build(order, {**TRANSFORMER, **(variant.backbone or {})}, task, seed)
    full_c2 = model.order.options.c2 if variant.anneal_c2 else None
    order_params = {id(p) for p in model.order.parameters()}
    if variant.frozen_order:
        for p in model.order.parameters():
            p.requires_grad_(False)
    backbone = [p for p in model.parameters() if id(p) not in order_params and p.requires_grad]
    groups = [{"params": backbone, "lr": lr}]
    ordered = [p for p in model.order.parameters() if p.requires_grad]
    if ordered:
        groups.append({"params": ordered, "lr": lr * variant.theta_lr})
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.99), weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    trajectory = []
    probe = task_data(task, 64, seed=4242)
    for step in range(steps + 1):
        if full_c2 is not None:  # a study-only schedule: the options object is replaced
            c2 = full_c2 * min(1.0, step / (variant.anneal_c2 * steps))
            model.order.options = model.order.options.model_copy(update={"c2": c2})
        if step % log_every == 0 or step == steps:
            w = weights_of(model, probe)
            if w is not None:
                trajectory.append(
                    {
                        "step": step,
                        "w_order_score": w_order_score(w.mean(0)),
                        "w_r": float(w[:, 0::2].mean()),
                        "w_y": float(w[:, 1::2].mean()),
                        "w_std": float(w.std()),
                    }
                )
            if on_log is not None:
                on_log(step, model)
        if step == steps:
            break
        x = task_data(task, batch, seed=1_000_000 * (seed + 1) + step)
        loss = model.nelbo(x, generator=g).total.mean() / BITS
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model, trajectory


def sampled_corr_of(model: OeMDM, num: int = 128, seed: int = 0) -> float:
    from oemdm_core import registry

    sampler = registry.build("sampler", "ancestral", steps=LENGTH)
    result = sampler.sample(model, num, generator=torch.Generator().manual_seed(seed))
    return order_correlation(result.order)


def coadapt(args) -> list[dict]:
    rows = []
    for task in args.tasks.split(","):
        test = task_data(task, args.sequences, seed=999)
        for name in args.variants.split(","):
            for seed in args.seeds:
                start = time.time()
                model, trajectory = train(
                    VARIANTS[name], task, seed, args.steps, args.lr, args.batch
                )
                row = {"task": task, "variant": name, "seed": seed, "steps": args.steps}
                row["nelbo"], row["nelbo_se"] = nelbo_bpt(model, test, args.draws)
                row["sampled_corr"] = sampled_corr_of(model)
                row["trajectory"] = trajectory
                row["wall_s"] = time.time() - start
                rows.append(row)
                print(
                    json.dumps(
                        {k: v for k, v in row.items() if k != "trajectory"}
                        | {"final": trajectory[-1] if trajectory else None}
                    ),
                    flush=True,
                )
    return rows


# -- the order gradient at trained denoisers ---------------------------------------------------


def theta_gradient(model: OeMDM, task: str, draws: int, seed: int) -> tuple[Tensor, Tensor]:
    """Expected ∂NELBO/∂θ of a flat positional order (mean `[L]`, SE `[L]`, bits/token) with
    `model`'s backbone held fixed."""
    probe = OeMDM(
        model.backbone,
        build({"name": "positional"}, {"name": "oracle"}).order,
        model.schedule,
        length=LENGTH,
    )
    probe.order.bind(model.backbone)
    g = torch.Generator().manual_seed(seed)
    grads = []
    for i in range(draws):
        x = task_data(task, 128, seed=77_000 + i)
        probe.order.theta.grad = None
        (probe.nelbo(x, generator=g).total.mean() / BITS).backward()
        grads.append(probe.order.theta.grad.clone())
    grads = torch.stack(grads)
    return grads.mean(0), grads.std(0) / len(grads) ** 0.5


LANDSCAPE = ("mdm", "soft-ltr", "soft-rtl", "r-first", "y-first")


def landscape(model: OeMDM, task: str, sequences: int = 256, draws: int = 4) -> dict:
    """NELBO (bits/token) of `model`'s backbone, held fixed, under each fixed order of
    `LANDSCAPE`: what the order gradient sees, as finite differences."""
    test = task_data(task, sequences, seed=999)
    values = {}
    for name in LANDSCAPE:
        other = build(order_spec(name), {"name": "oracle"}, task)
        swapped = OeMDM(model.backbone, other.order, model.schedule, length=LENGTH)
        values[name] = nelbo_bpt(swapped, test, draws, seed=1)[0]
    return values


def probe(args) -> list[dict]:
    """Train a transformer under one order; at checkpoints, the direction in which the
    NELBO gradient would move a flat positional order (descent direction −∂/∂θ)."""
    rows = []
    task = args.tasks.split(",")[0]
    for name in args.variants.split(","):

        def on_log(step, model, name=name):
            if step % args.probe_every:
                return
            mean, se = theta_gradient(model, task, args.draws, seed=step)
            descent = -mean
            row = {
                "trained_under": name,
                "step": step,
                "descent_order_score": w_order_score(descent),
                "descent_r_minus_y": float(descent[0::2].mean() - descent[1::2].mean()),
                "max_abs_z": float((mean / se).abs().max()),
                "landscape": landscape(model, task),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

        train(
            VARIANTS[name],
            task,
            0,
            args.steps,
            args.lr,
            args.batch,
            log_every=args.probe_every,
            on_log=on_log,
        )
    return rows


def report(args) -> list[dict]:
    """A markdown table of coadapt runs (`--inputs` JSON files or coadapt logs, comma-separated)."""
    rows = []
    for path in args.inputs.split(","):
        text = Path(path).read_text()
        if path.endswith(".json"):
            rows += json.loads(text)
        else:  # a coadapt log: one JSON line per run, with its final trajectory point
            for line in text.splitlines():
                if line.startswith("{"):
                    r = json.loads(line)
                    rows.append({**r, "trajectory": [r["final"]] if r.get("final") else []})
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if "variant" in r:
            groups.setdefault((r["task"], r["variant"], r["steps"]), []).append(r)
    columns = ["task", "variant", "steps", "seeds", "NELBO bits/token (per seed)", "mean ± SE"]
    print(harness.table_head([*columns, "w: odd / even positions", "sampled order corr."]))
    for (task, variant, steps), rs in groups.items():
        values = torch.tensor([r["nelbo"] for r in rs], dtype=torch.float64)
        se = float(values.std() / len(values) ** 0.5) if len(values) > 1 else float("nan")
        finals = [r["trajectory"][-1] for r in rs if r["trajectory"]]
        wy = " ; ".join(f"{f['w_y']:.2f} / {f['w_r']:.2f} (std {f['w_std']:.3f})" for f in finals)
        wy = wy or "–"
        per_seed = " / ".join(
            f"{v:.3f} ± {r['nelbo_se']:.3f}" for v, r in zip(values.tolist(), rs, strict=True)
        )
        corr = " ; ".join(f"{r['sampled_corr']:+.2f}" for r in rs)
        mean = f"{float(values.mean()):.3f} ± {se:.3f}"
        print(harness.table_row([task, variant, steps, len(rs), per_seed, mean, wy, corr]))
    return rows


def main(argv=None) -> int:
    p = harness.new_parser(__doc__)
    p.add_argument("what", choices=["ceiling", "oracle-train", "coadapt", "probe", "report"])
    p.add_argument(
        "--equal-reveal",
        default="",
        help="ceiling: orders to give L_64 on the equal-reveal grid (128 sequences, one path each)",
    )
    p.add_argument(
        "--orders",
        default="mdm,ar,block4,soft-ltr,soft-rtl,geo-ltr,r-first,y-first",
        help="ceiling: the fixed orders",
    )
    p.add_argument("--inputs", default="", help="report: JSON files of coadapt runs")
    p.add_argument("--sequences", type=int, default=512)
    p.add_argument("--draws", type=int, default=8)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    harness.add_seeds(p, "0,1")
    p.add_argument("--variants", default="mdm,pos-flat")
    p.add_argument("--tasks", default="lookup_chain")
    p.add_argument("--probe-every", type=int, default=100)
    harness.add_threads(p, default=1)
    harness.add_out(p, "write the rows as JSON here")
    args = harness.parse(p, argv)
    commands = {
        "ceiling": ceiling,
        "oracle-train": oracle_train,
        "coadapt": coadapt,
        "probe": probe,
        "report": report,
    }
    rows = commands[args.what](args)
    if args.out is not None and args.what != "report":
        harness.write_results(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
