"""Training: `fit(cfg)` runs one experiment end to end.

The loop is explicit: for each step, `grad_accum` micro-batches (per process) are drawn from a
data order that depends only on (seed, step), each with its own noise generator seeded by
(seed, step, shard), so resumed and data-parallel runs see exactly the same batches and draws.
Then AdamW with warmup + cosine, gradient clipping, an EMA of the weights
(`oemdm_core.runtime.optimizer`), periodic deterministic evaluation of the EMA weights and
atomic checkpoints. What the loop works on is built by `oemdm_core.runtime.training_run`;
the statistics between logged steps wait on the device in a `LogWindow`
(`oemdm_core.runtime.log_window`).

Reliability: the run directory is locked for the run (`oemdm_core.runtime.run_dir`); a
directory that holds another run is refused unless resumed or overwritten; SIGINT/SIGTERM only
set a flag and the loop checkpoints at the next step boundary (`oemdm_core.runtime.interrupt`);
checkpoints are versioned directories behind an atomically replaced symlink, written, resumed
and restored by `oemdm_core.runtime.checkpoint`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from oemdm_core.errors import OeMDMError
from oemdm_core.model.oemdm import OeMDM
from oemdm_core.plugin.registry import Registry, resolve_registry
from oemdm_core.runtime.data_cache import shard_indices
from oemdm_core.runtime.experiment import ExperimentConfig, check_components
from oemdm_core.runtime.fsdp import full_value
from oemdm_core.runtime.interrupt import Interrupted, StopSignal
from oemdm_core.runtime.log_window import LogWindow, bits_per_token
from oemdm_core.runtime.optimizer import update_ema
from oemdm_core.runtime.processes import join_processes
from oemdm_core.runtime.run_dir import RunLock, check_run_dir
from oemdm_core.runtime.run_end import (
    FitResult,
    LoopState,
    checkpoint,
    finish,
    nothing_to_do,
    stop_at_step_boundary,
)
from oemdm_core.runtime.run_log import group_grad_norms, order_statistics
from oemdm_core.runtime.training_run import TrainingRun, build_run, open_run_dir

__all__ = ["FitResult", "NonFiniteLossError", "fit", "noise_generator"]


class NonFiniteLossError(OeMDMError, FloatingPointError):
    """The training loss became NaN or inf."""


def noise_generator(seed: int, step: int, shard: int, device: torch.device) -> torch.Generator:
    """The noise generator of one micro-batch shard (a function of seed, step and shard only)."""
    return torch.Generator(device=device).manual_seed(
        (seed * 1_000_003 + step * 1_009 + shard) % 2**63
    )


def fit(
    cfg: ExperimentConfig,
    registry: Registry | None = None,
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
    registry = resolve_registry(registry)
    check_components(cfg, registry)
    procs = join_processes(cfg.training.device)
    run_dir = open_run_dir(cfg, resume, procs.rank)
    lock = RunLock(run_dir) if procs.rank == 0 else contextlib.nullcontext()
    with lock:
        if procs.rank == 0:
            check_run_dir(run_dir, resume is not None, overwrite)
        # start-up runs under the process's own handlers: a signal stops it at once
        run = build_run(cfg, registry, run_dir, resume is not None, procs)
        tc = cfg.training
        stop = min(tc.steps, tc.stop_after or tc.steps)
        if run.resumed_final_eval is not None and run.start_step >= stop:
            return nothing_to_do(run, stop)
        with StopSignal() as run.signals:
            return train(run, stop, on_step)


def train(run: TrainingRun, stop: int, on_step: Callable[[int, OeMDM], None] | None) -> FitResult:
    """The loop of `fit` from `run.start_step` to `stop`, then `finish`."""
    signals, tc = run.signals, run.cfg.training
    state = LoopState(run.start_step, run.start_step, LogWindow(run.start_step))
    bar = progress_bar(run, stop)
    run.model.train()
    try:
        if run.stop_requested(signals):  # a signal in the last moments of start-up
            raise Interrupted(
                f"interrupted by {signals.name} during start-up; nothing was trained",
                signals.received,
            )
        while state.step < stop:
            batch = optimisation_step(run, state)
            if on_step is not None:
                on_step(state.step, run.model)
            eval_due = bool(tc.eval_every) and state.step % tc.eval_every == 0
            ckpt_due = bool(tc.checkpoint_every) and state.step % tc.checkpoint_every == 0
            if state.step % tc.log_every == 0 or eval_due or ckpt_due or state.step == stop:
                log_interval(run, state, batch, eval_due, bar)
                if ckpt_due:
                    checkpoint(run, state)
            if run.stop_requested(signals):  # a step boundary: the state is consistent
                stop_at_step_boundary(run, state, signals, bar)
    except KeyboardInterrupt as exc:
        if bar is not None:
            bar.close()
        if isinstance(exc, Interrupted) and exc.phase == "evaluation":
            stop_at_step_boundary(run, state, signals, None)  # the step itself is complete
        if not isinstance(exc, Interrupted):  # mid-step: the state is not consistent
            saved = f"step {state.saved_step}, {run.ckpt_dir}"
            raise KeyboardInterrupt(
                "interrupted mid-step: stopped without saving; last checkpoint: "
                + (saved if state.saved_step or run.resuming else "none")
            ) from None
        raise
    if bar is not None:
        bar.close()
    return finish(run, state, signals)


def optimisation_step(run: TrainingRun, state: LoopState) -> Tensor:
    """One optimizer step from `state.step`: this process's `grad_accum` micro-batches (data
    and noise depend only on seed, step and shard), clipping, AdamW, the lr schedule and the
    EMA; the step's statistics join the log window. Returns the last micro-batch `[micro, L]`."""
    tc, model, train_model, device = run.cfg.training, run.model, run.train_model, run.device
    step, length = state.step, run.cfg.data.length
    run.optimizer.zero_grad(set_to_none=True)
    sums = torch.zeros(3, device=device)  # total, reconstruction, velocity matching
    for m in range(tc.grad_accum):
        shard = run.rank * tc.grad_accum + m
        idx = shard_indices(len(run.data.train), step, tc.batch_size, shard, run.micro, tc.seed)
        x = run.data.train.get(idx).to(device, non_blocking=True)  # [micro, L]
        sync = train_model is model or m == tc.grad_accum - 1
        with contextlib.nullcontext() if sync else train_model.no_sync(), run.autocast:
            terms = train_model(x, generator=noise_generator(tc.seed, step, shard, device))
            loss = terms.total.mean() / (length * tc.grad_accum)  # nats per token
        loss.backward()
        means = [terms.total.mean(), terms.reconstruction.mean(), terms.velocity_matching.mean()]
        sums += torch.stack(means).detach().float() / tc.grad_accum
    group_norms = group_grad_norms(run.groups)  # before clipping, like grad_norm
    grad_norm = full_value(
        torch.nn.utils.clip_grad_norm_(
            model.parameters(), tc.grad_clip if tc.grad_clip > 0 else float("inf")
        )
    )
    run.optimizer.step()
    run.scheduler.step()
    if run.ema is not None:
        update_ema(run.ema, model, step, tc.ema)
    state.step += 1
    state.window.add(sums, grad_norm, group_norms, tc.batch_size * length)
    return x


def log_interval(
    run: TrainingRun, state: LoopState, batch: Tensor, eval_due: bool, bar: Any | None
) -> None:
    """The end of a logging interval: gather the window (the loop's one host sync), stop on
    a NaN or inf, log the train scalars (with the order's statistics on the last batch
    `[micro, L]`, and an evaluation when due), and start the next window."""
    window, length = state.window, run.cfg.data.length
    values = window.gather(run.world)  # [steps in window, 4 + groups]
    stop_if_not_finite(values, run, state)
    state.losses.extend(bits_per_token(values, length))
    scalars = window.scalars(values, length, run.scheduler.get_last_lr()[0], list(run.groups))
    if run.model.order.learned:  # on every rank: a collective when the model is sharded
        with torch.no_grad():
            w = run.model.generation_weights(batch)
        if w is not None:
            scalars.update(order_statistics(w))
    if eval_due:
        state.last_eval = run.evaluate()
        scalars["eval/bits_per_token"] = state.last_eval.bits_per_token
        scalars["eval/perplexity"] = state.last_eval.perplexity
        if run.model.order.learned:
            run.log.order_weights(state.step, run.exported_model(), run.eval_data[0].to(run.device))
    run.log.scalars(state.step, scalars)
    if bar is not None:
        post = {
            "loss": f"{scalars['train/bits_per_token']:.3f}",
            "tok/s": f"{scalars['train/tokens_per_s']:.0f}",
        }
        if state.last_eval is not None:
            post["val_bpt"] = f"{state.last_eval.bits_per_token:.3f}"
        bar.set_postfix(post, refresh=False)
        bar.update(state.step - bar.n)
    window.reset(state.step)


def stop_if_not_finite(values: Tensor, run: TrainingRun, state: LoopState) -> None:
    """The NaN stop: raise `NonFiniteLossError` naming the first step of the window whose
    loss or grad norm (gathered `values`) is NaN or inf; the last checkpoint stays as it was."""
    bad = (~torch.isfinite(values)).any(dim=1).nonzero()
    if not len(bad):
        return
    row = int(bad[0])
    saved = (
        f"The last good checkpoint (step {state.saved_step}) is in {run.ckpt_dir}"
        if state.saved_step or run.resuming
        else "No checkpoint was written yet (training.checkpoint_every="
        f"{run.cfg.training.checkpoint_every}); nothing was saved"
    )
    raise NonFiniteLossError(
        f"loss became {values[row, 0].item()} (grad norm {values[row, 3].item()}) at step "
        f"{state.window.start + row + 1}; stopped. " + saved
    )


def progress_bar(run: TrainingRun, stop: int) -> Any | None:
    """The training progress bar (rank 0, `training.progress`), or None."""
    if not (run.cfg.training.progress and run.rank == 0):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=stop, initial=run.start_step, desc="train", dynamic_ncols=True)
