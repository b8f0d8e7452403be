"""Training: `fit(cfg)` runs one experiment end to end.

The loop is explicit: for each step, `grad_accum` micro-batches (per process) are drawn from a
data order that depends only on (seed, step), each with its own noise generator seeded by
(seed, step, shard), so resumed and data-parallel runs see exactly the same batches and draws.
Then AdamW with warmup + cosine, gradient clipping, an EMA of the weights, periodic
deterministic evaluation of the EMA weights and atomic checkpoints.

Reliability: the run directory is locked for the run (`oemdm_core.runtime.run_dir`); a directory that
holds another run is refused unless resumed or overwritten; SIGINT/SIGTERM only set a flag and
the loop checkpoints at the next step boundary (`oemdm_core.runtime.interrupt`); checkpoints are
versioned directories behind an atomically replaced symlink (`oemdm_core.runtime.checkpoints`).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from oemdm_core.errors import CheckpointError, ConfigError, OeMDMError, OeMDMWarning
from oemdm_core.model.oemdm import OeMDM
from oemdm_core.runtime.checkpoints import (
    CHECKPOINT_DIR,
    EXPERIMENT_FILE,
    TOKENIZER_FILE,
    checkpoint_versions,
    load_json,
    load_training_state,
    rng_states,
    save_versioned_checkpoint,
    set_rng_states,
    tokenizer_record,
)
from oemdm_core.runtime.data_cache import Data, build_data, eval_batches, shard_indices
from oemdm_core.runtime.device import resolve_device
from oemdm_core.runtime.evaluation.likelihood import EvalResult, evaluate
from oemdm_core.runtime.experiment import (
    ExperimentConfig,
    check_components,
    config_differences,
    flatten,
)
from oemdm_core.runtime.interrupt import Interrupted, StopSignal
from oemdm_core.runtime.run_dir import RunLock, check_run_dir, discard_metrics_after, new_run_dir
from oemdm_core.runtime.run_log import (
    RunLogger,
    group_grad_norms,
    order_statistics,
    parameter_groups,
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
    overwrite: bool = False,
) -> FitResult:
    """Train `cfg` (or continue the run in `resume`); returns where everything went.

    A run directory that already holds a run is refused unless `resume` names it or
    `overwrite` is set (which deletes its checkpoints and logs). SIGINT / SIGTERM save a
    checkpoint at the next step boundary and raise `Interrupted` (exit code 130 / 143).
    on_step(step, model) is called after every optimizer step (tests inject faults with it).
    """
    from oemdm_core.plugin.registry import registry as default_registry

    registry = registry if registry is not None else default_registry
    check_components(cfg, registry)
    rank, world = _distributed()
    device = resolve_device(cfg.training.device, "training.device")
    run_dir = open_run_dir(cfg, resume, rank)
    lock = RunLock(run_dir) if rank == 0 else contextlib.nullcontext()
    with lock, StopSignal() as signals:
        if rank == 0:
            check_run_dir(run_dir, resume is not None, overwrite)
        return _fit(
            cfg, registry, run_dir, resume is not None, on_step, signals, device, rank, world
        )


def open_run_dir(cfg: ExperimentConfig, resume, rank: int) -> Path:
    """The run directory (created if new; a fresh collision-free name by default)."""
    if resume is not None:
        run_dir = Path(resume)
        if not run_dir.is_dir():
            raise FileNotFoundError(
                f"--resume {run_dir}: no checkpoint in {run_dir / CHECKPOINT_DIR} (no such run "
                "directory)"
            )
        return run_dir
    if cfg.training.run_dir:
        run_dir = Path(cfg.training.run_dir)
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    if dist.is_initialized():  # every rank must agree on the fresh name
        names = [str(new_run_dir("runs", cfg.model.order.name)) if rank == 0 else None]
        dist.broadcast_object_list(names, src=0)
        return Path(names[0])
    return new_run_dir("runs", cfg.model.order.name)


def load_resume_state(run_dir: Path, cfg: ExperimentConfig) -> tuple[Path, dict, dict]:
    """(checkpoint, training state, tokenizer record) of the newest readable checkpoint of
    `run_dir`; older versions are tried when the newest is unreadable (with a warning)."""
    versions = checkpoint_versions(run_dir)
    if not versions:
        hidden = sorted(p.name for p in run_dir.glob(f".{CHECKPOINT_DIR}.*") if p.is_dir())
        hint = (
            f" ({', '.join(hidden)} left by a crash of an older oemdm during a checkpoint "
            f"swap; rename it to {CHECKPOINT_DIR} to resume from it)"
            if hidden
            else "; the run stopped before its first checkpoint: start over with --overwrite"
        )
        raise FileNotFoundError(
            f"--resume {run_dir}: no checkpoint in {run_dir / CHECKPOINT_DIR}{hint}"
        )
    problems = []
    for ckpt in versions:
        try:
            saved = load_json(ckpt / EXPERIMENT_FILE)
            state = load_training_state(ckpt)
            tokenizer_rec = load_json(ckpt / TOKENIZER_FILE)
        except (CheckpointError, FileNotFoundError) as exc:
            problems.append(str(exc))
            warnings.warn(f"skipping checkpoint {ckpt}: {exc}", OeMDMWarning, stacklevel=2)
            continue
        diff = config_differences(saved, cfg.to_dict())
        if diff:
            old, new = flatten(saved), flatten(cfg.to_dict())
            details = "; ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in diff)
            raise ConfigError(f"refusing to resume {run_dir} with a different config: {details}")
        return ckpt, state, tokenizer_rec
    raise CheckpointError(f"--resume {run_dir}: no readable checkpoint: " + "; ".join(problems))


def _fit(
    cfg: ExperimentConfig,
    registry,
    run_dir: Path,
    resuming: bool,
    on_step: Callable[[int, OeMDM], None] | None,
    signals: StopSignal,
    device: torch.device,
    rank: int,
    world: int,
) -> FitResult:
    tc = cfg.training
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
    if resuming:
        _, state, tokenizer_rec = load_resume_state(run_dir, cfg)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if rank == 0:
        import yaml

        from oemdm_core.files import write_text

        write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        if state is not None:  # steps logged after the checkpoint are recomputed
            discard_metrics_after(run_dir, state["step"])

    # -- data and model ------------------------------------------------------------------
    data = build_data(cfg, registry, tokenizer_rec)
    torch.manual_seed(tc.seed)
    model = OeMDM.from_config(cfg.model_config_for(data.vocab_size), registry=registry).to(device)
    if cfg.sampling.num_samples > 0:  # a sampler that cannot serve the model fails now
        spec = cfg.sampling.sampler
        try:
            registry.build("sampler", spec.name, **spec.options).check_model(model)
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(f"sampling.sampler: {exc}") from None
    ema = copy.deepcopy(model).requires_grad_(False) if tc.ema > 0 else None
    if tc.compile:
        model.backbone.compile()  # in place: parameter names (checkpoints) are unchanged
    optimizer, scheduler = make_optimizer(model, tc, device)
    step = saved_step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        set_rng_states(state["rng"])
        step = saved_step = state["step"]
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

    def run_eval(progress: bool = False) -> EvalResult:
        batches = eval_data
        if progress and tc.progress and rank == 0:
            from tqdm.auto import tqdm

            batches = tqdm(eval_data, desc="final eval", dynamic_ncols=True, leave=False)
        with autocast:
            return evaluate(
                eval_model,
                batches,
                cfg.evaluation.mode,
                cfg.evaluation.num_times,
                cfg.evaluation.seed,
            )

    def checkpoint() -> None:
        nonlocal saved_step
        if rank == 0:
            save_versioned_checkpoint(
                run_dir,
                step,
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
                keep=tc.keep_checkpoints,
            )
        saved_step = step
        if world > 1:
            dist.barrier()

    def stop_requested() -> bool:
        """Whether a signal asked this run (any rank of it) to stop."""
        if world == 1:
            return signals.received is not None
        flag = torch.tensor([float(signals.received or 0)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and signals.received is None:
            signals.received = int(flag.item())
        return bool(flag.item())

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
                        + (
                            f"The last good checkpoint (step {saved_step}) is in {ckpt_dir}"
                            if saved_step or resuming
                            else "No checkpoint was written yet (training.checkpoint_every="
                            f"{tc.checkpoint_every}); nothing was saved"
                        )
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
            if stop_requested():  # a step boundary: the state is consistent
                if bar is not None:
                    bar.close()
                if saved_step != step:
                    checkpoint()
                message = (
                    f"interrupted by {signals.name} at step {step}; checkpoint saved in {ckpt_dir}; "
                    f"continue with `oemdm train --resume {run_dir}`"
                )
                raise Interrupted(message, signals.received)
    except KeyboardInterrupt as exc:
        if bar is not None:
            bar.close()
        if not isinstance(exc, Interrupted):  # mid-step: the state is not consistent
            last = f"step {saved_step}, {ckpt_dir}" if saved_step or resuming else "none"
            raise KeyboardInterrupt(
                f"interrupted mid-step: stopped without saving; last checkpoint: {last}"
            ) from None
        raise
    if bar is not None:
        bar.close()

    # -- final evaluation, checkpoint, samples ------------------------------------------
    if last_eval is None or not (tc.eval_every and step % tc.eval_every == 0):
        last_eval = run_eval(progress=True)
        log.scalars(step, {"eval/bits_per_token": last_eval.bits_per_token})
    checkpoint()
    if signals.received is not None:
        raise Interrupted(
            f"interrupted by {signals.name} after the final checkpoint (step {step}, {ckpt_dir}); "
            "samples were not drawn",
            signals.received,
        )
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
