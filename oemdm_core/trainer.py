"""Training: `fit(cfg)` runs one experiment end to end.

The loop is explicit: for each step, `grad_accum` micro-batches (per process) are drawn from a
data order that depends only on (seed, step), each with its own noise generator seeded by
(seed, step, shard), so resumed and data-parallel runs see exactly the same batches and draws.
Then AdamW with warmup + cosine, gradient clipping, an EMA of the weights, periodic
deterministic evaluation of the EMA weights and atomic checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from oemdm_core.errors import ConfigError, OeMDMError
from oemdm_core.evaluation import EvalResult, evaluate
from oemdm_core.experiment import ExperimentConfig, check_components, config_differences, flatten
from oemdm_core.loader import Data, build_data, eval_batches, shard_indices
from oemdm_core.model import OeMDM
from oemdm_core.run_log import RunLogger, group_grad_norms, order_statistics, parameter_groups
from oemdm_core.training_state import (
    CHECKPOINT_DIR,
    EXPERIMENT_FILE,
    TOKENIZER_FILE,
    load_json,
    load_training_state,
    rng_states,
    save_checkpoint,
    set_rng_states,
    tokenizer_record,
)


class NonFiniteLossError(OeMDMError, FloatingPointError):
    """The training loss became NaN or inf."""


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def noise_generator(seed: int, step: int, shard: int, device: torch.device) -> torch.Generator:
    """The noise generator of one micro-batch shard (a function of seed, step and shard only)."""
    return torch.Generator(device=device).manual_seed(
        (seed * 1_000_003 + step * 1_009 + shard) % 2**63
    )


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"training.device: got {name!r}, but CUDA is not available; use cpu")
    return torch.device(name)


def make_optimizer(model: OeMDM, tc, device: torch.device):
    """AdamW (weight decay on matrices only; fused on CUDA) and the warmup + cosine schedule."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": tc.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=tc.lr,
        betas=tc.betas,
        fused=device.type == "cuda",
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, tc.warmup_steps, tc.steps, tc.min_lr_ratio)
    )
    return optimizer, scheduler


@dataclass
class FitResult:
    run_dir: Path
    checkpoint: Path
    step: int
    evaluation: EvalResult | None
    samples: list[str] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # train bits/token at each logged step


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def fit(
    cfg: ExperimentConfig,
    registry=None,
    resume: str | os.PathLike | None = None,
    on_step: Callable[[int, OeMDM], None] | None = None,
) -> FitResult:
    """Train `cfg` (or continue the run in `resume`); returns where everything went.

    on_step(step, model) is called after every optimizer step (tests inject faults with it).
    """
    from oemdm_core.registry import registry as default_registry

    registry = registry if registry is not None else default_registry
    check_components(cfg, registry)
    tc = cfg.training
    rank, world = _distributed()
    device = resolve_device(tc.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    shards = world * tc.grad_accum
    if tc.batch_size % shards:
        raise ConfigError(
            f"training.batch_size: got {tc.batch_size}; must be divisible by processes × "
            f"grad_accum = {world} × {tc.grad_accum} = {shards}"
        )
    micro = tc.batch_size // shards

    # -- run directory, resume ---------------------------------------------------------
    state, tokenizer_rec = None, None
    if resume is not None:
        run_dir = Path(resume)
        ckpt = run_dir / CHECKPOINT_DIR
        if not (ckpt / EXPERIMENT_FILE).is_file():
            raise FileNotFoundError(f"--resume {run_dir}: no checkpoint in {ckpt}")
        diff = config_differences(load_json(ckpt / EXPERIMENT_FILE), cfg.to_dict())
        if diff:
            saved = flatten(load_json(ckpt / EXPERIMENT_FILE))
            new = flatten(cfg.to_dict())
            details = "; ".join(f"{k}: {saved.get(k)!r} → {new.get(k)!r}" for k in diff)
            raise ConfigError(f"refusing to resume {run_dir} with a different config: {details}")
        state = load_training_state(ckpt)
        tokenizer_rec = load_json(ckpt / TOKENIZER_FILE)
    else:
        name = f"{cfg.model.order.name}-{datetime.now():%Y%m%d-%H%M%S}"
        run_dir = Path(tc.run_dir) if tc.run_dir else Path("runs") / name
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    # -- data and model ------------------------------------------------------------------
    data = build_data(cfg, registry, tokenizer_rec)
    torch.manual_seed(tc.seed)
    model = OeMDM.from_config(cfg.model_config_for(data.vocab_size), registry=registry).to(device)
    ema = copy.deepcopy(model).requires_grad_(False) if tc.ema > 0 else None
    if tc.compile:
        model.backbone.compile()  # in place: parameter names (checkpoints) are unchanged
    optimizer, scheduler = make_optimizer(model, tc, device)
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        set_rng_states(state["rng"])
        step = state["step"]
    train_model = model
    if dist.is_initialized():
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    log = RunLogger(run_dir, enabled=rank == 0)
    eval_data = eval_batches(
        data.evaluation, cfg.evaluation.batch_size, cfg.evaluation.max_sequences
    )
    eval_model = ema if ema is not None else model
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and tc.bf16
        else contextlib.nullcontext()
    )
    length = cfg.data.length
    last_eval: EvalResult | None = None
    losses: list[float] = []

    def run_eval() -> EvalResult:
        with autocast:
            return evaluate(
                eval_model,
                eval_data,
                cfg.evaluation.mode,
                cfg.evaluation.num_times,
                cfg.evaluation.seed,
            )

    def checkpoint() -> None:
        if rank == 0:
            save_checkpoint(
                ckpt_dir,
                eval_model,
                tokenizer_record(data.tokenizer),
                cfg.to_dict(),
                {
                    "step": step,
                    "sequences_seen": step * tc.batch_size,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "rng": rng_states(),
                    "eval": last_eval.as_dict() if last_eval else None,
                },
                registry=registry,
            )
        if world > 1:
            dist.barrier()

    # -- the loop ------------------------------------------------------------------------
    stop = min(tc.steps, tc.stop_after or tc.steps)
    groups = parameter_groups(model)
    # per step: [total, reconstruction, velocity_matching, grad_norm, *group grad norms]
    window: list[Tensor] = []
    window_start, tokens_since, t0 = step, 0, time.perf_counter()
    bar = None
    if tc.progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=stop, initial=step, desc="train", dynamic_ncols=True)
    model.train()
    try:
        while step < stop:
            optimizer.zero_grad(set_to_none=True)
            sums = torch.zeros(3, device=device)
            for m in range(tc.grad_accum):
                shard = rank * tc.grad_accum + m
                idx = shard_indices(len(data.train), step, tc.batch_size, shard, micro, tc.seed)
                x = data.train.get(idx).to(device, non_blocking=True)  # [micro, L]
                sync = train_model is model or m == tc.grad_accum - 1
                with contextlib.nullcontext() if sync else train_model.no_sync(), autocast:
                    terms = train_model(x, generator=noise_generator(tc.seed, step, shard, device))
                    loss = terms.total.mean() / (length * tc.grad_accum)  # nats per token
                loss.backward()
                sums += (
                    torch.stack(
                        [
                            terms.total.mean(),
                            terms.reconstruction.mean(),
                            terms.velocity_matching.mean(),
                        ]
                    )
                    .detach()
                    .float()
                    / tc.grad_accum
                )
            group_norms = group_grad_norms(groups)  # before clipping, like grad_norm
            grad_norm = torch.nn.utils.clip_grad_norm_(
                model.parameters(), tc.grad_clip if tc.grad_clip > 0 else float("inf")
            )
            optimizer.step()
            scheduler.step()
            if ema is not None:
                d = min(tc.ema, (1 + step) / (10 + step))
                torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - d)
            step += 1
            tokens_since += tc.batch_size * length
            window.append(
                torch.cat([sums, grad_norm.detach().float().reshape(1), group_norms.to(device)])
            )
            if on_step is not None:
                on_step(step, model)
            eval_due = tc.eval_every and step % tc.eval_every == 0
            ckpt_due = tc.checkpoint_every and step % tc.checkpoint_every == 0
            if step % tc.log_every == 0 or eval_due or ckpt_due or step == stop:
                # The only host sync of the loop: once per logging interval.
                stacked = torch.stack(window)  # [steps in window, 4 + groups]
                if world > 1:
                    dist.all_reduce(stacked)
                    stacked /= world
                values = stacked.cpu()
                bad = (~torch.isfinite(values)).any(dim=1).nonzero()  # loss or grad norm
                if len(bad):
                    first = window_start + int(bad[0]) + 1
                    raise NonFiniteLossError(
                        f"loss became {values[int(bad[0]), 0].item()} (grad norm "
                        f"{values[int(bad[0]), 3].item()}) at step {first}; stopped. "
                        f"The last good checkpoint is in {ckpt_dir}"
                        + ("" if ckpt_dir.exists() else " (none was written yet)")
                    )
                scale = 1 / (length * math.log(2))
                losses.extend((values[:, 0] * scale).tolist())
                elapsed = time.perf_counter() - t0
                mean = values.mean(dim=0)
                scalars = {
                    "train/bits_per_token": float(mean[0]) * scale,
                    "train/reconstruction_bits_per_token": float(mean[1]) * scale,
                    "train/velocity_matching_bits_per_token": float(mean[2]) * scale,
                    "train/nats_per_sequence": float(mean[0]),
                    "train/grad_norm": float(mean[3]),
                    "train/lr": scheduler.get_last_lr()[0],
                    "train/tokens_per_s": tokens_since / max(elapsed, 1e-9),
                }
                for i, name in enumerate(groups):
                    scalars[f"train/grad_norm/{name}"] = float(mean[4 + i])
                if model.order.learned and rank == 0:
                    with torch.no_grad():
                        w = model.generation_weights(x)
                    if w is not None:
                        scalars.update(order_statistics(w))
                if eval_due:
                    last_eval = run_eval()
                    scalars["eval/bits_per_token"] = last_eval.bits_per_token
                    scalars["eval/perplexity"] = last_eval.perplexity
                    log.order_weights(step, eval_model, eval_data[0].to(device))
                log.scalars(step, scalars)
                if bar is not None:
                    post = {
                        "loss": f"{scalars['train/bits_per_token']:.3f}",
                        "tok/s": f"{scalars['train/tokens_per_s']:.0f}",
                    }
                    if last_eval is not None:
                        post["val_bpt"] = f"{last_eval.bits_per_token:.3f}"
                    bar.set_postfix(post, refresh=False)
                    bar.update(step - bar.n)
                window, window_start, tokens_since, t0 = [], step, 0, time.perf_counter()
                if ckpt_due:
                    checkpoint()
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        checkpoint()
        if rank == 0:
            print(f"\ninterrupted at step {step}; checkpoint saved in {ckpt_dir}")
        raise
    if bar is not None:
        bar.close()

    # -- final evaluation, checkpoint, samples ------------------------------------------
    if last_eval is None or not (tc.eval_every and step % tc.eval_every == 0):
        last_eval = run_eval()
        log.scalars(step, {"eval/bits_per_token": last_eval.bits_per_token})
    checkpoint()
    texts: list[str] = []
    if rank == 0 and cfg.sampling.num_samples > 0:
        texts, order = draw_samples(eval_model, data, cfg, registry)
        log.samples(step, texts, order)
        log.order_weights(step, eval_model, eval_data[0].to(device))
    log.hparams(
        {k: v for k, v in flatten(cfg.to_dict()).items() if not k.endswith("run_dir")},
        {"bits_per_token": last_eval.bits_per_token, "perplexity": last_eval.perplexity},
    )
    log.close()
    return FitResult(run_dir, ckpt_dir, step, last_eval, texts, losses)


@torch.no_grad()
def draw_samples(
    model: OeMDM, data: Data, cfg: ExperimentConfig, registry
) -> tuple[list[str], Tensor]:
    """`cfg.sampling.num_samples` decoded samples and their generation orders `[N, L]`."""
    spec = cfg.sampling.sampler
    sampler = registry.build("sampler", spec.name, **spec.options)
    g = torch.Generator(device=model.device).manual_seed(cfg.sampling.seed)
    result = sampler.sample(model, cfg.sampling.num_samples, generator=g)
    return [data.decode(row.tolist()) for row in result.tokens.cpu()], result.order.cpu()
