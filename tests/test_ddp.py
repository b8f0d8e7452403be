"""Data-parallel training: 2 CPU processes (gloo) reproduce the 1-process run with the same
global batch.

The 1-process run uses grad_accum=2 (two micro-batches of 2) and the 2-process run one
micro-batch of 2 per process: both see the same sequences and the same noise draws (shard k
of a step always gets the same data and generator), so they differ only by floating-point
summation order. Tolerance: 1e-4 bits/token on every step's loss and 1e-4 on every weight.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from conftest import tiny_run

from oemdm_core.runtime.checkpoint.store import LATEST_CHECKPOINT, STATE_FILE
from oemdm_core.runtime.experiment import load_config

TOL = 1e-4


def overrides(tmp_path, run: str, accum: int) -> list[str]:
    return tiny_run(
        tmp_path,
        run,
        f"training.grad_accum={accum}",
        "evaluation.max_sequences=2",
        "evaluation.num_times=1",
    )


def _worker(rank: int, world: int, port: int, tmp_path, queue) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    import torch.distributed as dist

    from oemdm_core.runtime.trainer import fit

    try:
        result = fit(load_config(overrides=overrides(tmp_path, "ddp", accum=1)))
        if rank == 0:
            queue.put(result.losses)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    from oemdm_core.runtime.trainer import fit

    single = fit(load_config(overrides=overrides(tmp_path, "single", accum=2)))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    mp.start_processes(
        _worker, args=(2, _free_port(), tmp_path, queue), nprocs=2, join=True, start_method="spawn"
    )
    losses = queue.get(timeout=10)
    assert len(losses) == len(single.losses) == 4
    for a, b in zip(single.losses, losses, strict=True):
        assert abs(a - b) < TOL, (single.losses, losses)
    one = torch.load(tmp_path / "single" / LATEST_CHECKPOINT / STATE_FILE, weights_only=False)
    two = torch.load(tmp_path / "ddp" / LATEST_CHECKPOINT / STATE_FILE, weights_only=False)
    for key, value in one["model"].items():
        assert torch.allclose(value, two["model"][key], atol=TOL), key


def test_ddp_code_path_in_one_process_matches_plain_training(tmp_path):
    """Fast variant: a 1-process gloo group runs the DDP wrapper, no_sync micro-steps and
    all-reduce logging, and must reproduce the plain run exactly."""
    import torch.distributed as dist

    from oemdm_core.runtime.trainer import fit

    plain = fit(load_config(overrides=overrides(tmp_path, "plain", accum=2)))
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        wrapped = fit(load_config(overrides=overrides(tmp_path, "wrapped", accum=2)))
    finally:
        dist.destroy_process_group()
    assert wrapped.losses == pytest.approx(plain.losses, abs=1e-6)
