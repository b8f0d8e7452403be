"""A training run, built: its processes and device, its directory, the data, the model with
its EMA and optimiser (restored from the newest checkpoint when resuming), the logger and
the evaluation batches; and what the training loop asks of it between steps: evaluate,
write a checkpoint, tell whether a signal asked any process to stop, draw samples.

`oemdm_core.runtime.trainer.fit` builds one with `build_run` and runs the loop on it.
"""

from __future__ import annotations

import contextlib
import copy
import os
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn

from oemdm_core.errors import ConfigError
from oemdm_core.files import write_text
from oemdm_core.model.oemdm import OeMDM
from oemdm_core.plugin.registry import Registry, resolve_registry
from oemdm_core.runtime.checkpoint.resume import check_same_data, load_resume_state
from oemdm_core.runtime.checkpoint.sharded import load_shards, shard_writer
from oemdm_core.runtime.checkpoint.store import (
    LATEST_CHECKPOINT,
    save_versioned_checkpoint,
    tokenizer_record,
)
from oemdm_core.runtime.checkpoint.training_state import (
    capture_training_state,
    final_eval,
    restore_training_state,
)
from oemdm_core.runtime.data_cache import Data, EvalBatches, build_data, eval_batches
from oemdm_core.runtime.evaluation.likelihood import EvalResult, evaluate
from oemdm_core.runtime.experiment import ExperimentConfig, TrainingConfig
from oemdm_core.runtime.fsdp import gathered_copy, shard_model
from oemdm_core.runtime.interrupt import StopSignal
from oemdm_core.runtime.optimizer import make_optimizer
from oemdm_core.runtime.processes import Processes
from oemdm_core.runtime.run_dir import discard_metrics_after, new_run_dir
from oemdm_core.runtime.run_log import RunLogger, parameter_groups


def open_run_dir(cfg: ExperimentConfig, resume: str | os.PathLike | None, rank: int) -> Path:
    """The run directory (created if new; a fresh collision-free name by default)."""
    if resume is not None:
        run_dir = Path(resume)
        if not run_dir.is_dir():
            raise FileNotFoundError(
                f"--resume {run_dir}: no checkpoint in {run_dir / LATEST_CHECKPOINT} (no such run "
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


@dataclass
class TrainingRun:
    """What the training loop works on; fixed for the run (the loop's state is the trainer's).

    micro: sequences per micro-batch; train_model: `model`, or its DDP wrapper; sharded:
    `model` and `ema` are FSDP-sharded (their calls are collectives, `runtime.fsdp`); start_step:
    0, or the step of the checkpoint resumed from; resumed_final_eval: the final evaluation
    of that checkpoint when `finish` wrote it (the run had ended); signals: the run's
    stop flag (`fit` sets it); groups: the parameter groups whose grad
    norms are logged (`run_log.parameter_groups`); eval_data: evaluation batches `[B, L]`.
    """

    cfg: ExperimentConfig
    registry: Registry
    run_dir: Path
    resuming: bool
    rank: int
    world: int
    device: torch.device
    micro: int
    data: Data
    model: OeMDM
    train_model: nn.Module
    ema: OeMDM | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    log: RunLogger
    groups: dict[str, list[nn.Parameter]]
    eval_data: EvalBatches
    autocast: AbstractContextManager
    start_step: int
    sharded: bool = False
    resumed_final_eval: EvalResult | None = None
    signals: StopSignal = field(default_factory=StopSignal)

    @property
    def eval_model(self) -> OeMDM:
        """The weights evaluated, sampled and saved: the EMA's when there is one."""
        return self.ema if self.ema is not None else self.model

    def exported_model(self) -> OeMDM | None:
        """`eval_model` as a plain model on rank 0 (None on the other ranks), for what rank 0
        does alone: samples, `save_pretrained`. Sharded: a copy gathered from every rank (a
        collective: every rank calls it)."""
        if self.sharded:
            return gathered_copy(self.eval_model, self.registry, self.device)
        return self.eval_model if self.rank == 0 else None

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / LATEST_CHECKPOINT

    def evaluate(self, progress: bool = False) -> EvalResult:
        """The configured evaluation of `eval_model` (a progress bar with `progress`)."""
        batches = self.eval_data
        if progress and self.cfg.training.progress and self.rank == 0:
            from tqdm.auto import tqdm

            batches = tqdm(self.eval_data, desc="final eval", dynamic_ncols=True, leave=False)
        ev = self.cfg.evaluation
        with self.signals.immediate("evaluation"), self.autocast:
            return evaluate(self.eval_model, batches, ev.mode, ev.num_times, ev.seed)

    def save_checkpoint(
        self, step: int, last_eval: EvalResult | None, finished: bool = False
    ) -> None:
        """Write the checkpoint of `step`: rank 0 writes it, other ranks return at once, or,
        sharded, once they have written their shards into it (`checkpoint.sharded`);
        `finished`: the final checkpoint of the run (a resume of it has nothing to do)."""
        exported = self.exported_model()
        shards = shard_writer(self.model, self.optimizer, self.ema) if self.sharded else None
        if exported is None:  # not rank 0 (sharded: its shards are written)
            return
        state = capture_training_state(
            step,
            step * self.cfg.training.batch_size,
            self.model,
            self.optimizer,
            self.scheduler,
            self.ema,
            last_eval,
            finished,
            self.data.fingerprint,
            sharded=self.sharded,
        )
        save_versioned_checkpoint(
            self.run_dir,
            step,
            exported,
            tokenizer_record(self.data.tokenizer),
            self.cfg.to_dict(),
            state,
            registry=self.registry,
            keep=self.cfg.training.keep_checkpoints,
            shards=shards,
        )

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for in a single-process run)."""
        if self.world > 1:
            dist.barrier()

    def stop_requested(self, signals: StopSignal) -> bool:
        """Whether a signal asked this run (any rank of it) to stop."""
        if self.world == 1:
            return signals.received is not None
        flag = torch.tensor([float(signals.received or 0)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and signals.received is None:
            signals.received = int(flag.item())
        return bool(flag.item())


def build_run(
    cfg: ExperimentConfig, registry: Registry, run_dir: Path, resuming: bool, procs: Processes
) -> TrainingRun:
    """Everything the loop needs, in the order that fixes the random streams: data, then the
    model initialised from `training.seed`, then (resuming) the saved state and generators."""
    tc, device = cfg.training, procs.device
    micro = micro_batch_size(tc, procs.world)
    ckpt, state, tokenizer_rec = None, None, None
    if resuming:
        ckpt, state, tokenizer_rec = load_resume_state(run_dir, cfg)
    data = build_data(cfg, registry, tokenizer_rec)
    if state is not None:
        check_same_data(run_dir, state, data)
    torch.manual_seed(tc.seed)
    model = OeMDM.from_config(cfg.model_config_for(data.vocab_size), registry=registry).to(device)
    if cfg.sampling.num_samples > 0:  # a sampler that cannot serve the model fails now
        ensure_sampler_serves(cfg, registry, model)
    ema = copy.deepcopy(model).requires_grad_(False) if tc.ema > 0 else None
    sharded = tc.distributed == "fsdp" and dist.is_initialized()
    if sharded:  # before the optimiser, which must hold the sharded parameters
        shard_model(model, ema)
    if tc.compile:
        model.backbone.compile()  # in place: parameter names (checkpoints) are unchanged
    optimizer, scheduler = make_optimizer(model, tc, device)
    step = 0
    if state is not None:
        if state.get("sharded") and ckpt is not None:
            load_shards(ckpt, model, optimizer, ema)
        step = restore_training_state(state, model, optimizer, scheduler, ema)
    train_model: nn.Module = model
    if dist.is_initialized() and not sharded:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    eval_data = eval_batches(
        data.evaluation, cfg.evaluation.batch_size, cfg.evaluation.max_sequences
    )
    # written only once the run is built, so a failed start leaves no run behind
    if procs.rank == 0:
        write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        if state is not None:  # steps logged after the checkpoint are recomputed
            discard_metrics_after(run_dir, state["step"])
    log = RunLogger(run_dir, enabled=procs.rank == 0)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and tc.bf16
        else contextlib.nullcontext()
    )
    return TrainingRun(
        cfg=cfg,
        registry=registry,
        run_dir=run_dir,
        resuming=resuming,
        rank=procs.rank,
        world=procs.world,
        device=device,
        micro=micro,
        data=data,
        model=model,
        train_model=train_model,
        ema=ema,
        optimizer=optimizer,
        scheduler=scheduler,
        log=log,
        groups=parameter_groups(model),
        eval_data=eval_data,
        autocast=autocast,
        start_step=step,
        sharded=sharded,
        resumed_final_eval=final_eval(state),
    )


def micro_batch_size(tc: TrainingConfig, world: int) -> int:
    """Sequences per micro-batch: the global batch shared by `world` processes × `grad_accum`."""
    shards = world * tc.grad_accum
    if tc.batch_size % shards:
        raise ConfigError(
            f"training.batch_size: got {tc.batch_size}; must be divisible by processes × "
            f"grad_accum = {world} × {tc.grad_accum} = {shards}"
        )
    return tc.batch_size // shards


def ensure_sampler_serves(cfg: ExperimentConfig, registry: Registry, model: OeMDM) -> None:
    """Fail before training when the configured sampler cannot serve `model`."""
    spec = cfg.sampling.sampler
    try:
        registry.build("sampler", spec.name, **spec.options).check_model(model)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"sampling.sampler: {exc}") from None


@torch.no_grad()
def draw_samples(
    model: OeMDM, data: Data, cfg: ExperimentConfig, registry: Registry | None = None
) -> tuple[list[str], Tensor]:
    """`cfg.sampling.num_samples` decoded samples and their generation orders `[N, L]`."""
    spec = cfg.sampling.sampler
    sampler = resolve_registry(registry).build("sampler", spec.name, **spec.options)
    g = torch.Generator(device=model.device).manual_seed(cfg.sampling.seed)
    result = sampler.sample(model, cfg.sampling.num_samples, generator=g)
    return [data.decode(row.tolist()) for row in result.tokens.cpu()], result.order.cpu()
