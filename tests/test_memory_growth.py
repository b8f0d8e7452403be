"""Memory that does not grow with steps: nothing a step leaves alive (issue 20).

The leak found: the EMA update ran with grad enabled, so its in-place lerp towards the
trained parameters recorded one autograd node on every EMA weight per step, a chain as
long as the run (about 15 kB per step for the default model, and the heap fragmentation
around it took the default run's peak RSS to 2.9 GB). These tests count what survives a
step instead of reading RSS, which depends on the allocator and the machine.
"""

from __future__ import annotations

import copy
import gc
import warnings

import torch
from conftest import tiny_model, tiny_run

from oemdm_core.runtime.experiment import load_config
from oemdm_core.runtime.optimizer import update_ema
from oemdm_core.runtime.trainer import fit


def live_tensors() -> list[torch.Tensor]:
    gc.collect()
    with warnings.catch_warnings():  # isinstance on torch's deprecated aliases warns
        warnings.simplefilter("ignore", FutureWarning)
        return [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]


def graph_size(tensors: list[torch.Tensor]) -> int:
    """Autograd nodes reachable from the `grad_fn` of `tensors`."""
    seen, todo = set(), [t.grad_fn for t in tensors if t.grad_fn is not None]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        todo.extend(next_node for next_node, _ in node.next_functions)
    return len(seen)


def test_the_ema_update_records_no_autograd_history():
    model = tiny_model()
    ema = copy.deepcopy(model).requires_grad_(False)
    for step in range(3):
        update_ema(ema, model, step, 0.99)
    weights = list(ema.parameters())
    assert [p for p in weights if p.requires_grad or p.grad_fn is not None] == []
    assert graph_size(weights) == 0


def test_nothing_a_training_step_leaves_alive_accumulates(tmp_path):
    # A learned order (its statistics are logged from the last batch), evaluation and
    # checkpoints every 2 steps and samples at the end: every path of the loop runs.
    cfg = load_config(
        overrides=tiny_run(
            tmp_path,
            "run",
            "model.order=lomdm",
            "training.steps=8",
            "training.eval_every=2",
            "training.checkpoint_every=2",
            "sampling.sampler.steps=4",
            "sampling.num_samples=2",
        )
    )
    seen: dict[int, tuple[int, int]] = {}

    def count(step: int, model) -> None:
        tensors = live_tensors()
        seen[step] = (len(tensors), graph_size(tensors))

    fit(cfg, on_step=count)
    # Between steps no tensor holds an autograd graph, and steps 4 and 8 (both after an
    # evaluation and a checkpoint) leave the same number of tensors alive.
    assert {step: nodes for step, (_, nodes) in seen.items() if nodes} == {}
    assert seen[8][0] == seen[4][0]
