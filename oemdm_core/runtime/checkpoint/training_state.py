"""The training state of a checkpoint (`training_state.pt`): taken from a run's objects when
a checkpoint is written, and put back into a freshly built run when it resumes, generators
included, so that the resumed run continues bit for bit."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn

from oemdm_core.runtime.evaluation.likelihood import EvalResult


def rng_states() -> dict[str, Any]:
    """Global RNG states (torch CPU and CUDA, numpy, python)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])


def capture_training_state(
    step: int,
    sequences_seen: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: nn.Module | None,
    last_eval: EvalResult | None,
    finished: bool,
    data_fingerprint: dict[str, Any] | None,
    sharded: bool = False,
) -> dict[str, Any]:
    """The state of a run after `step` optimizer steps, as `training_state.pt` stores it;
    `finished`: the final checkpoint of the run (a resume of it has nothing to do);
    `data_fingerprint`: the training data's (`Data.fingerprint`, checked on resume);
    `sharded`: the weights, optimiser and EMA are in the checkpoint's shards instead
    (`checkpoint.sharded`), and None here."""
    return {
        "step": step,
        "sequences_seen": sequences_seen,
        "model": None if sharded else model.state_dict(),
        "optimizer": None if sharded else optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "ema": ema.state_dict() if ema is not None and not sharded else None,
        "sharded": sharded,
        "rng": rng_states(),
        "eval": last_eval.as_dict() if last_eval else None,
        "finished": finished,
        "data": data_fingerprint,
    }


def restore_training_state(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    ema: nn.Module | None,
) -> int:
    """Load a saved training state into the run's objects and restore the generators;
    returns the step the state was saved at. A sharded state's weights, optimiser and EMA
    are in the checkpoint's shards (`checkpoint.sharded.load_shards`)."""
    if not state.get("sharded"):
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_states(state["rng"])
    return state["step"]


def final_eval(state: dict[str, Any] | None) -> EvalResult | None:
    """The final evaluation of a resumed checkpoint written at the end of its run (`finish`),
    else None. Checkpoints written before `finished` was recorded count as final when they
    hold an evaluation (a final checkpoint always does)."""
    if state is None or not state.get("finished", state.get("eval") is not None):
        return None
    return EvalResult(**state["eval"]) if state.get("eval") else None
