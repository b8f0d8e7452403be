"""Memory that does not grow with steps: nothing a step leaves alive (issue 20).

The leak found: the EMA update ran with grad enabled, so its in-place lerp towards the
trained parameters recorded one autograd node on every EMA weight per step, a chain as
long as the run (about 15 kB per step for the default model, and the heap fragmentation
around it took the default run's peak RSS to 2.9 GB). These tests count what survives a
step instead of reading RSS, which depends on the allocator and the machine. Evaluation
reads its batches when it uses them, and zero-shot data is held at 2 bytes per token.
"""

from __future__ import annotations

import copy
import gc
import warnings

import numpy as np
import pytest
import torch
from conftest import tiny_model, tiny_run
from oemdm_data import CharTokenizer

from oemdm_core.runtime.data_cache import Sequences, eval_batches
from oemdm_core.runtime.evaluation.zero_shot import encode_texts
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


class CountedSequences(Sequences):
    """Sequences that count the sequences read through `get`."""

    reads = 0

    def get(self, indices: np.ndarray) -> torch.Tensor:
        self.reads += len(indices)
        return super().get(indices)


def test_evaluation_batches_are_read_when_used_not_all_at_once():
    # 10 packed sequences of 4 tokens; the first 7 in batches of 3.
    data = CountedSequences(np.arange(40, dtype=np.uint16), np.array([0, 40]), 4, "packed", 0)
    batches = eval_batches(data, batch_size=3, max_sequences=7)
    assert data.reads == 0 and len(batches) == 3
    first = next(iter(batches))
    assert data.reads == 3 and first.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    rows = [b.tolist() for b in batches]
    assert [len(b) for b in rows] == [3, 3, 1] and rows[2] == [[24, 25, 26, 27]]
    assert [b.tolist() for b in batches] == rows  # iterable again, the same batches
    assert batches[-1].tolist() == rows[2]
    with pytest.raises(IndexError):
        batches[3]


def test_zero_shot_tokens_take_two_bytes_each_for_a_small_vocabulary():
    tok = CharTokenizer()
    tok.fit("abc ")
    encoded = encode_texts(["abc cab " * 100, "cab"], tok)
    assert encoded.tokens.dtype == np.uint16  # not int64: 4x less memory per token
    assert tok.decode(encoded.tokens[-3:].tolist()) == "cab"
