"""How a training run ends: at its last step (`finish`: the final evaluation, the final
checkpoint, samples), on a signal at a step boundary (`stop_at_step_boundary`), or at once
when a resumed run has nothing left to do (`nothing_to_do`). Also the loop's state
(`LoopState`) and what `fit` returns (`FitResult`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from oemdm_core.errors import OeMDMWarning
from oemdm_core.runtime.config_dicts import flatten
from oemdm_core.runtime.evaluation.likelihood import EvalResult
from oemdm_core.runtime.interrupt import Interrupted, StopSignal
from oemdm_core.runtime.log_window import LogWindow
from oemdm_core.runtime.training_run import TrainingRun, draw_samples


@dataclass
class FitResult:
    run_dir: Path
    checkpoint: Path
    step: int
    evaluation: EvalResult | None
    samples: list[str] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # train bits/token at each logged step


@dataclass
class LoopState:
    """What the loop changes: the steps done, the step of the newest checkpoint, the steps
    not logged yet, the newest evaluation and the train bits/token of every logged step."""

    step: int
    saved_step: int
    window: LogWindow
    last_eval: EvalResult | None = None
    losses: list[float] = field(default_factory=list)


def nothing_to_do(run: TrainingRun, stop: int) -> FitResult:
    """A resume of a run whose final checkpoint is at or past `stop`: say so, change nothing."""
    tc = run.cfg.training
    limit = f"training.steps={tc.steps}" if stop == tc.steps else f"training.stop_after={stop}"
    warnings.warn(
        f"run {run.run_dir} already finished at step {run.start_step} ({limit}); nothing to "
        f"do, nothing was changed (draw samples with `oemdm sample {run.run_dir}`)",
        OeMDMWarning,
        stacklevel=3,
    )
    run.log.close()
    return FitResult(run.run_dir, run.ckpt_dir, run.start_step, run.resumed_final_eval)


def checkpoint(run: TrainingRun, state: LoopState, finished: bool = False) -> None:
    """Save the run at `state.step` (rank 0 writes; every process waits for it)."""
    run.save_checkpoint(state.step, state.last_eval, finished)
    state.saved_step = state.step
    run.barrier()


def stop_at_step_boundary(
    run: TrainingRun,
    state: LoopState,
    signals: StopSignal,
    bar: Any | None,
    during: str | None = None,
) -> NoReturn:
    """A signal asked the run to stop: checkpoint this step boundary, raise `Interrupted`
    (`during`: the phase it stopped, when that was not the training loop itself)."""
    if bar is not None:
        bar.close()
    if state.saved_step != state.step:
        checkpoint(run, state)
    if during is None:
        message = (
            f"interrupted by {signals.name} at step {state.step}; checkpoint saved in "
            f"{run.ckpt_dir}; continue with `oemdm train --resume {run.run_dir}`"
        )
    else:
        message = (
            f"interrupted by {signals.name} during {during}; checkpoint of step {state.step} "
            f"saved in {run.ckpt_dir}; `oemdm train --resume {run.run_dir}` finishes the run"
        )
    raise Interrupted(message, signals.received)


def finish(run: TrainingRun, state: LoopState, signals: StopSignal) -> FitResult:
    """After the last step: the final evaluation (unless this step was just evaluated), the
    final checkpoint, then samples and hparams."""
    cfg = run.cfg
    tc = cfg.training
    if state.last_eval is None or not (tc.eval_every and state.step % tc.eval_every == 0):
        try:
            state.last_eval = run.evaluate(progress=True)
        except Interrupted:
            stop_at_step_boundary(run, state, signals, None, during="the final evaluation")
        run.log.scalars(state.step, {"eval/bits_per_token": state.last_eval.bits_per_token})
    checkpoint(run, state, finished=True)
    if signals.received is not None:
        raise Interrupted(
            f"interrupted by {signals.name} after the final checkpoint (step {state.step}, "
            f"{run.ckpt_dir}); samples were not drawn",
            signals.received,
        )
    texts: list[str] = []
    exported = run.exported_model() if cfg.sampling.num_samples > 0 else None
    if exported is not None:  # rank 0
        try:
            with signals.immediate("sampling"):
                texts, order = draw_samples(exported, run.data, cfg, run.registry)
        except Interrupted:
            raise Interrupted(
                f"interrupted by {signals.name} while drawing samples; the final checkpoint "
                f"(step {state.step}) is saved in {run.ckpt_dir}",
                signals.received,
            ) from None
        run.log.samples(state.step, texts, order)
        run.log.order_weights(state.step, exported, run.eval_data[0].to(run.device))
    ev = state.last_eval
    run.log.hparams(
        {k: v for k, v in flatten(cfg.to_dict()).items() if not k.endswith("run_dir")},
        {"bits_per_token": ev.bits_per_token, "perplexity": ev.perplexity},
    )
    run.log.close()
    return FitResult(run.run_dir, run.ckpt_dir, state.step, ev, texts, state.losses)
