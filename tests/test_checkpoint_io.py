"""Checkpoint I/O lives in one package, `oemdm_core.runtime.checkpoint`: writing, resuming,
restoring, the training state and the config a run directory stands for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import tiny_run

from oemdm_core.runtime.checkpoint.resume import resolve_config
from oemdm_core.runtime.checkpoint.store import EXPERIMENT_FILE, latest_checkpoint, load_json
from oemdm_core.runtime.checkpoint.training_state import (
    capture_training_state,
    restore_training_state,
)
from oemdm_core.runtime.experiment import load_config
from oemdm_core.runtime.trainer import fit

CORE = Path(__file__).resolve().parents[1] / "oemdm_core"
PACKAGE = CORE / "runtime" / "checkpoint"
# What only checkpoint I/O does: pickle a training state, set the generators, name the
# files inside a checkpoint. (The run directory lists its `checkpoint` entries by name.)
CHECKPOINT_IO = re.compile(
    r"torch\.(save|load)\(|set_rng_state|\"(training_state\.pt|experiment\.json|checksums\.json)\""
)


def test_no_core_module_outside_the_package_does_checkpoint_io():
    found = [
        f"{path.relative_to(CORE)}:{number}: {line.strip()}"
        for path in sorted(CORE.rglob("*.py"))
        if PACKAGE not in path.parents
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if CHECKPOINT_IO.search(line)
    ]
    assert found == []


def test_the_package_holds_what_it_says():
    names = {p.stem for p in PACKAGE.glob("*.py")}
    assert names == {"__init__", "store", "training_state", "resume", "restore", "sharded"}
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 300, path.name


def test_the_config_of_a_resumed_run_is_the_saved_one_going_on_to_its_steps(tmp_path):
    fit(load_config(overrides=tiny_run(tmp_path, "run", "training.stop_after=2")))
    saved = load_json(latest_checkpoint(tmp_path / "run") / EXPERIMENT_FILE)
    assert saved["training"]["stop_after"] == 2
    cfg = resolve_config(None, ["evaluation.num_times=3"], resume=tmp_path / "run")
    assert cfg.training.stop_after is None  # a resumed run goes on to training.steps
    assert cfg.evaluation.num_times == 3  # overrides apply on top of the saved config
    assert cfg.data.length == 16 and cfg.training.run_dir == str(tmp_path / "run")
    fresh = resolve_config(None, [], resume=None)
    assert fresh.data.length != 16  # without resume: the defaults
    with pytest.raises(FileNotFoundError, match=r"--resume .*nowhere: no checkpoint in"):
        resolve_config(None, [], resume=tmp_path / "nowhere")


def test_a_captured_training_state_restores_weights_optimiser_and_generators():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scheduler.step()
    state = capture_training_state(1, 4, model, optimizer, scheduler, None, None, False, None)
    expected_next_draw = torch.rand(3)

    other = torch.nn.Linear(3, 2)
    other_optimizer = torch.optim.AdamW(other.parameters(), lr=0.1)
    other_scheduler = torch.optim.lr_scheduler.LambdaLR(other_optimizer, lambda step: 0.5**step)
    torch.manual_seed(123)
    step = restore_training_state(state, other, other_optimizer, other_scheduler, None)
    assert step == 1 and state["sequences_seen"] == 4 and state["finished"] is False
    assert torch.equal(other.weight, model.weight) and torch.equal(other.bias, model.bias)
    assert other_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert torch.equal(
        other_optimizer.state_dict()["state"][0]["exp_avg"],
        optimizer.state_dict()["state"][0]["exp_avg"],
    )
    assert torch.equal(torch.rand(3), expected_next_draw)  # the generator continues exactly
