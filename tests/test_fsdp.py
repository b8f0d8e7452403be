"""Sharded training (`training.distributed: fsdp`, FSDP2): 2 CPU processes (gloo) reproduce
the 1-process run with the same global batch, and their sharded checkpoints resume.

As in tests/test_ddp.py the 1-process run uses grad_accum=2 and the 2-process run one
micro-batch per process, so both see the same sequences and noise draws and differ only by
floating-point summation order: tolerance 1e-4 bits/token per step and 1e-4 per weight.
The 2-process runs of a test share one spawn (one process group, several `fit` calls).
"""

from __future__ import annotations

import copy
import errno
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from conftest import tiny_run
from safetensors.torch import load_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from oemdm_core import OeMDM
from oemdm_core.errors import CheckpointError, CheckpointWriteError
from oemdm_core.model.pretrained import WEIGHTS_FILE
from oemdm_core.runtime.checkpoint.sharded import SHARDS_DIR, load_shards
from oemdm_core.runtime.checkpoint.store import LATEST_CHECKPOINT, MODEL_DIR, STATE_FILE
from oemdm_core.runtime.experiment import load_config
from oemdm_core.runtime.optimizer import make_optimizer

TOL = 1e-4


def overrides(tmp_path, run: str, *extra: str, accum: int = 1) -> list[str]:
    return tiny_run(
        tmp_path,
        run,
        f"training.grad_accum={accum}",
        "evaluation.max_sequences=2",
        "evaluation.num_times=1",
        *extra,
    )


def _worker(rank: int, world: int, port: int, tmp_path, jobs, queue) -> None:
    """Run `jobs` [(run, overrides, resume)] one after another in one process group; rank 0
    puts each run's losses on `queue`."""
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    import torch.distributed as dist

    from oemdm_core.runtime.trainer import fit

    dist.init_process_group("gloo")
    try:
        for run, extra, resume in jobs:
            cfg = load_config(overrides=overrides(tmp_path, run, *extra))
            result = fit(cfg, resume=tmp_path / run if resume else None)
            if rank == 0:
                queue.put((run, result.losses))
    finally:
        dist.destroy_process_group()


def two_processes(tmp_path, jobs) -> dict[str, list[float]]:
    """The losses of each 2-process fsdp run of `jobs` (see `_worker`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    jobs = [(run, ["training.distributed=fsdp", *extra], resume) for run, extra, resume in jobs]
    queue = mp.get_context("spawn").Queue()
    mp.start_processes(
        _worker, args=(2, port, tmp_path, jobs, queue), nprocs=2, join=True, start_method="spawn"
    )
    return dict(queue.get(timeout=10) for _ in jobs)


def shards(run_dir, tmp_path):
    """The sharded state of a run's newest checkpoint, gathered: {"model", "optimizer", "ema"}."""
    out = tmp_path / f"{run_dir.name}-gathered.pt"
    dcp_to_torch_save(run_dir / LATEST_CHECKPOINT / SHARDS_DIR, out)
    return torch.load(out, weights_only=False)


def exported(run_dir):
    """The weights saved for evaluation and sampling (the EMA's): `model/model.safetensors`."""
    return load_file(run_dir / LATEST_CHECKPOINT / MODEL_DIR / WEIGHTS_FILE)


def assert_close(a: dict, b: dict, tol: float = TOL) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.allclose(a[key], b[key], atol=tol, rtol=0), key


def test_two_fsdp_processes_match_one_process_with_the_same_global_batch(tmp_path):
    from oemdm_core.runtime.trainer import fit

    single = fit(load_config(overrides=overrides(tmp_path, "single", "training.steps=2", accum=2)))
    losses = two_processes(tmp_path, [("fsdp", ["training.steps=2"], False)])["fsdp"]
    assert len(losses) == len(single.losses) == 2
    assert losses == pytest.approx(single.losses, abs=TOL, rel=0)
    one = torch.load(tmp_path / "single" / LATEST_CHECKPOINT / STATE_FILE, weights_only=False)
    state = torch.load(tmp_path / "fsdp" / LATEST_CHECKPOINT / STATE_FILE, weights_only=False)
    assert state["sharded"] and state["model"] is None and state["optimizer"] is None
    shard_files = sorted(
        p.name for p in (tmp_path / "fsdp" / LATEST_CHECKPOINT / SHARDS_DIR).iterdir()
    )
    assert shard_files == [".metadata", "__0_0.distcp", "__1_0.distcp"]  # one file per rank
    two = shards(tmp_path / "fsdp", tmp_path)
    assert_close(one["model"], two["model"])
    assert_close(one["ema"], two["ema"])
    # the exported weights are the EMA's, gathered in full on rank 0
    assert_close(exported(tmp_path / "single"), exported(tmp_path / "fsdp"))
    assert_close(two["ema"], exported(tmp_path / "fsdp"), tol=0)
    moments = two["optimizer"]["state"]  # sharded too: Adam's moments of every weight
    assert sorted(moments) == sorted(one["model"])
    assert all(float(m["step"]) == 2 for m in moments.values())
    # the shards reshard on reading: into one process that does not shard at all
    cfg = load_config(overrides=overrides(tmp_path, "fsdp", "training.steps=2"))
    model = OeMDM.from_pretrained(tmp_path / "fsdp" / LATEST_CHECKPOINT / MODEL_DIR)
    ema = copy.deepcopy(model)
    optimizer, _ = make_optimizer(model, cfg.training, torch.device("cpu"))
    load_shards(tmp_path / "fsdp" / LATEST_CHECKPOINT, model, optimizer, ema)
    assert_close(model.state_dict(), two["model"], tol=0)
    assert_close(ema.state_dict(), two["ema"], tol=0)
    names = dict(enumerate(p for group in optimizer.param_groups for p in group["params"]))
    by_name = {id(p): n for n, p in model.named_parameters()}
    for index, moment in optimizer.state_dict()["state"].items():
        saved = moments[by_name[id(names[index])]]
        assert torch.equal(moment["exp_avg_sq"], saved["exp_avg_sq"])


@pytest.mark.slow
def test_a_resumed_fsdp_run_reproduces_the_uninterrupted_one(tmp_path):
    """4 steps straight == 2 steps, resume from the sharded checkpoint, 2 steps; both 2
    processes, learned order (LoMDM: the root unit holds its schedulers), EMA on."""
    lomdm = "model.order={name: lomdm}"
    losses = two_processes(
        tmp_path,
        [
            ("straight", [lomdm], False),
            ("resumed", [lomdm, "training.stop_after=2"], False),
            ("resumed", [lomdm], True),
        ],
    )
    assert len(losses["straight"]) == 4 and len(losses["resumed"]) == 2  # the resumed half
    assert losses["resumed"] == losses["straight"][2:]
    a, b = shards(tmp_path / "straight", tmp_path), shards(tmp_path / "resumed", tmp_path)
    for part in ("model", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    for key, moments in a["optimizer"]["state"].items():
        for name, value in moments.items():
            assert torch.equal(value, b["optimizer"]["state"][key][name]), (key, name)
    assert torch.equal(
        exported(tmp_path / "straight")["backbone.head.weight"],
        exported(tmp_path / "resumed")["backbone.head.weight"],
    )


def test_a_failed_shard_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """One process in a gloo group runs the sharded path (fully_shard over one rank): a
    write that fails half-way through the shards leaves the previous checkpoint, its shards
    and the pointer as they were, and no temporary directory behind."""
    import torch.distributed as dist
    from torch.distributed.checkpoint import FileSystemWriter

    from oemdm_core.runtime.trainer import fit

    run = tmp_path / "run"
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        fsdp = "training.distributed=fsdp"
        fit(load_config(overrides=overrides(tmp_path, "run", fsdp, "training.stop_after=2")))
        before = shards(run, tmp_path)
        pointed = os.readlink(run / LATEST_CHECKPOINT)
        real_write = FileSystemWriter.write_data

        def crash(self, plan, planner):  # half the shards written, then the disk is full
            real_write(self, plan, planner).wait()
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(FileSystemWriter, "write_data", crash)
        message = r"step-00000004: no space left on the device \(disk full\).*step-00000002 is"
        with pytest.raises(CheckpointWriteError, match=message):
            fit(load_config(overrides=overrides(tmp_path, "run", fsdp)), resume=run)
    finally:
        dist.destroy_process_group()
    assert os.readlink(run / LATEST_CHECKPOINT) == pointed
    assert_close(shards(run, tmp_path)["model"], before["model"], tol=0)
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    # unreadable shards: one line naming them (here read by one process without a group)
    shard = run / LATEST_CHECKPOINT / SHARDS_DIR / "__0_0.distcp"
    shard.write_bytes(shard.read_bytes()[:100])
    resume = load_config(overrides=overrides(tmp_path, "run", "training.distributed=fsdp"))
    with pytest.raises(CheckpointError, match=r"shards: the shards cannot be read \("):
        fit(resume, resume=run)
    (shard.parent / ".metadata").unlink()
    with pytest.raises(CheckpointError, match=r"missing shards/.metadata in checkpoint .*step-"):
        fit(resume, resume=run)


def test_a_bad_distributed_mode_is_one_line_naming_the_valid_ones(tmp_path):
    from oemdm_core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(overrides=overrides(tmp_path, "run", "training.distributed=zero"))
    assert str(info.value) == "training.distributed: got 'zero'; 'ddp' or 'fsdp'"


def test_the_blocks_and_the_model_are_sharded_and_gathered_back_in_full(tmp_path):
    """One process in a gloo group: `shard_model` makes each transformer block (the
    backbone's `shard_units`) and the model FSDP units; `gathered_copy` gives a plain model
    with the same weights and leaves the global RNG as it was."""
    import torch.distributed as dist
    from conftest import tiny_model
    from torch.distributed.fsdp import FSDPModule

    from oemdm_core.plugin.registry import resolve_registry
    from oemdm_core.runtime.fsdp import gathered_copy, shard_model

    model = tiny_model("lomdm")
    full = {k: v.clone() for k, v in model.state_dict().items()}
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        shard_model(model, None)
        units = [m for m in model.modules() if isinstance(m, FSDPModule)]
        assert units == [model, *model.backbone.blocks] and len(model.backbone.blocks) > 1
        rng = torch.get_rng_state()
        copy = gathered_copy(model, resolve_registry(None), torch.device("cpu"))
        assert torch.equal(torch.get_rng_state(), rng)
    finally:
        dist.destroy_process_group()
    assert copy is not None and not isinstance(copy, FSDPModule)
    assert_close(copy.state_dict(), full, tol=0)
