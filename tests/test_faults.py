"""Faults during training: signals at any point of a step, crashes during a checkpoint swap,
a full or read-only disk, corrupt checkpoints, concurrent and colliding runs."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_run

import oemdm_core.runtime.trainer as trainer
from oemdm_core.cli import main
from oemdm_core.errors import CheckpointWriteError, OeMDMWarning, RunDirError
from oemdm_core.runtime.checkpoint.resume import load_resume_state
from oemdm_core.runtime.checkpoint.store import (
    CHECKPOINT_VERSIONS_DIR,
    LATEST_CHECKPOINT,
    STATE_FILE,
    checkpoint_versions,
    find_checkpoint,
)
from oemdm_core.runtime.experiment import load_config
from oemdm_core.runtime.interrupt import Interrupted
from oemdm_core.runtime.run_dir import LOCK_FILE, RunLock, new_run_dir
from oemdm_core.runtime.run_log import RunLogger
from oemdm_core.runtime.trainer import NonFiniteLossError, fit

STEPS = 5


def tiny(tmp_path, run: str, *extra: str):
    """Dropout, grad accumulation, EMA and a logging window of 2 steps: every piece of
    state that a resume must restore is in play."""
    return tiny_run(
        tmp_path,
        run,
        "model.backbone={name: transformer, preset: tiny, dropout: 0.1}",
        f"training.steps={STEPS}",
        "training.grad_accum=2",
        "training.warmup_steps=2",
        "training.log_every=2",
        *extra,
    )


def state(run_dir):
    return torch.load(run_dir / LATEST_CHECKPOINT / STATE_FILE, weights_only=False)


def assert_same_training_state(a, b):
    assert a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]:
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    for sa, sb in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        for key in sa:
            assert torch.equal(sa[key], sb[key]), key
    assert a["scheduler"] == b["scheduler"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The final training state of the uninterrupted run."""
    tmp = tmp_path_factory.mktemp("straight")
    fit(load_config(overrides=tiny(tmp, "run")))
    return state(tmp / "run")


# -- signals ------------------------------------------------------------------------------
def _patch_points(monkeypatch):
    """name -> (object, attribute): functions called once or more inside every step."""
    return {
        "data fetch": (trainer, "shard_indices"),
        "noise draw": (trainer, "noise_generator"),
        "backward": (torch.Tensor, "backward"),
        "grad clip": (torch.nn.utils, "clip_grad_norm_"),
        "optimizer.step": (torch.optim.AdamW, "step"),
        "ema update": (torch, "_foreach_lerp_"),
        "logging": (RunLogger, "scalars"),
        "checkpoint write": (torch, "save"),
    }


FAST_POINTS = ["data fetch", "backward", "optimizer.step", "ema update"]
SLOW_POINTS = ["noise draw", "grad clip", "logging", "checkpoint write"]


def _interrupt_at(monkeypatch, point: str, signum: int, call: int, after: bool) -> None:
    owner, attr = _patch_points(monkeypatch)[point]
    real = getattr(owner, attr)
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == call and not after:
            os.kill(os.getpid(), signum)
        out = real(*args, **kwargs)
        if len(calls) == call and after:
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(owner, attr, wrapped)


@pytest.mark.parametrize(
    "point",
    FAST_POINTS + [pytest.param(p, marks=pytest.mark.slow) for p in SLOW_POINTS],
)
@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_a_signal_anywhere_in_a_step_resumes_bit_for_bit(
    tmp_path, monkeypatch, straight, point, after
):
    """SIGINT or SIGTERM delivered inside a step (before or after one of its operations)
    checkpoints at the next step boundary; resuming equals the uninterrupted run exactly."""
    signum = signal.SIGTERM if after else signal.SIGINT
    # checkpoint every step for the "checkpoint write" point, so that it is called
    extra = ["training.checkpoint_every=1"] if point == "checkpoint write" else []
    call = {"checkpoint write": 2, "logging": 1}.get(point, 3)
    cfg = load_config(overrides=tiny(tmp_path, "run", *extra))
    with monkeypatch.context() as m:
        _interrupt_at(m, point, signum, call, after)
        with pytest.raises(
            Interrupted, match=f"interrupted by {signal.Signals(signum).name}"
        ) as info:
            fit(cfg)
    assert info.value.exit_code == 128 + signum
    interrupted = state(tmp_path / "run")
    assert 1 <= interrupted["step"] < STEPS
    # The optimizer agrees with the step counter (the bug: Adam one step ahead).
    adam_steps = {float(s["step"]) for s in interrupted["optimizer"]["state"].values()}
    assert adam_steps == {float(interrupted["step"])}
    fit(cfg, resume=tmp_path / "run")
    if extra:  # checkpointing every step is the only config difference
        return
    assert_same_training_state(straight, state(tmp_path / "run"))


def test_signal_handlers_are_restored_after_fit(tmp_path):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    fit(load_config(overrides=tiny(tmp_path, "run", "training.steps=1", "training.warmup_steps=1")))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_sigterm_from_the_cli_exits_143(tmp_path, monkeypatch, capsys):
    real = trainer.noise_generator
    calls = []

    def term(*args):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args)

    monkeypatch.setattr(trainer, "noise_generator", term)
    argv = ["train"] + [a for o in tiny(tmp_path, "run") for a in ("--set", o)]
    assert main(argv) == 143
    err = capsys.readouterr().err
    assert "interrupted by SIGTERM at step 2" in err and "--resume" in err
    assert state(tmp_path / "run")["step"] == 2


def _train_subprocess(tmp_path, ignore_sigint: bool = False) -> subprocess.Popen:
    overrides = tiny(tmp_path, "run", "training.steps=100000", "training.log_every=1")
    argv = [sys.executable, "-m", "oemdm_core.cli", "train"]
    argv += [a for o in overrides for a in ("--set", o)]

    def preexec():
        if ignore_sigint:  # what a shell does for a job started with `&`
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.2)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "ignore_sigint"),
    [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, True)],
    ids=["sigterm", "sigint-in-a-background-job"],
)
def test_a_real_signal_checkpoints_and_exits(tmp_path, signum, code, ignore_sigint):
    proc = _train_subprocess(tmp_path, ignore_sigint)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert state(tmp_path / "run")["step"] >= 2
    assert "--resume" in err


@pytest.mark.slow
def test_sigkill_at_random_instants_always_leaves_a_complete_checkpoint(tmp_path):
    """kill -9 while checkpointing every step: a complete checkpoint is always reachable."""
    overrides = tiny(tmp_path, "run", "training.steps=100000", "training.checkpoint_every=1")
    argv = [sys.executable, "-m", "oemdm_core.cli", "train"]
    argv += [a for o in overrides for a in ("--set", o)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / "run"
    deadline = time.time() + 120
    while not (run / LATEST_CHECKPOINT / STATE_FILE).is_file():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.7)
    proc.kill()
    proc.wait()
    ckpt = find_checkpoint(run)
    torch.load(ckpt / STATE_FILE, weights_only=False)
    newest, saved, _ = load_resume_state(run, load_config(overrides=overrides))
    assert saved["step"] >= 1 and newest == checkpoint_versions(run)[0]


# -- the checkpoint swap ------------------------------------------------------------------
@pytest.mark.parametrize(
    "crash_in",
    ["torch.save", "rename into place", "pointer swap", "pruning"],
)
def test_a_crash_anywhere_in_the_swap_leaves_a_complete_checkpoint(tmp_path, monkeypatch, crash_in):
    import oemdm_core.files as checkpoint
    import oemdm_core.runtime.checkpoint.store as ts

    cfg = load_config(overrides=tiny(tmp_path, "run", "training.checkpoint_every=1"))
    fit(load_config(overrides=tiny(tmp_path, "run", "training.stop_after=2")))
    real = {
        "torch.save": (torch, "save"),
        "rename into place": (checkpoint.os, "replace"),
        "pointer swap": (ts, "replace_symlink"),
        "pruning": (ts.shutil, "rmtree"),
    }[crash_in]
    original = getattr(*real)

    def crash(*args, **kwargs):
        if crash_in == "rename into place" and ".tmp-" not in str(args[0]):
            return original(*args, **kwargs)
        raise SystemExit("power cut")  # not an Exception: nothing may clean up after it

    with monkeypatch.context() as m:
        m.setattr(*real, crash)
        with pytest.raises(SystemExit):
            fit(cfg, resume=tmp_path / "run")
    versions = checkpoint_versions(tmp_path / "run")
    assert versions, "no complete checkpoint is reachable"
    for version in versions:
        assert 2 <= torch.load(version / STATE_FILE, weights_only=False)["step"] <= STEPS
    pointed = find_checkpoint(tmp_path / "run")
    assert (pointed / STATE_FILE).is_file()
    assert fit(cfg, resume=tmp_path / "run").step == STEPS


def test_a_run_written_before_versioning_resumes(tmp_path):
    """An older oemdm wrote `checkpoint/` as a plain directory: it is resumed, then moved
    into `checkpoints/` and replaced by the symlink layout."""
    import shutil

    run = tmp_path / "run"
    fit(load_config(overrides=tiny(tmp_path, "run", "training.stop_after=2")))
    target = (run / LATEST_CHECKPOINT).resolve()
    (run / LATEST_CHECKPOINT).unlink()
    shutil.copytree(target, run / LATEST_CHECKPOINT)
    shutil.rmtree(run / CHECKPOINT_VERSIONS_DIR)
    assert fit(load_config(overrides=tiny(tmp_path, "run")), resume=run).step == STEPS
    assert (run / LATEST_CHECKPOINT).is_symlink() and state(run)["step"] == STEPS
    assert [p.name for p in checkpoint_versions(run)][0].startswith(f"step-{STEPS:08d}")


def test_keeps_the_last_n_checkpoints(tmp_path):
    fit(load_config(overrides=tiny(tmp_path, "run", "training.checkpoint_every=1")))
    names = sorted(p.name for p in (tmp_path / "run" / CHECKPOINT_VERSIONS_DIR).iterdir())
    # the final checkpoint (with the final eval) supersedes the periodic one at the same step
    assert names == [f"step-{STEPS - 1:08d}", f"step-{STEPS:08d}.1"]
    link = os.readlink(tmp_path / "run" / LATEST_CHECKPOINT)
    assert link == f"{CHECKPOINT_VERSIONS_DIR}/step-{STEPS:08d}.1"
    cfg = tiny(tmp_path, "three", "training.checkpoint_every=1", "training.keep_checkpoints=3")
    fit(load_config(overrides=cfg))
    assert len(list((tmp_path / "three" / CHECKPOINT_VERSIONS_DIR).iterdir())) == 3


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    fit(
        load_config(
            overrides=tiny(tmp_path, "run", "training.checkpoint_every=1", "training.stop_after=3")
        )
    )
    newest = checkpoint_versions(tmp_path / "run")[0]
    data = (newest / STATE_FILE).read_bytes()
    (newest / STATE_FILE).write_bytes(data[: len(data) // 2])  # truncated
    cfg = load_config(overrides=tiny(tmp_path, "run", "training.checkpoint_every=1"))
    with pytest.warns(OeMDMWarning, match=f"skipping checkpoint {newest}.*{STATE_FILE}.*corrupt"):
        assert fit(cfg, resume=tmp_path / "run").step == STEPS


def test_a_full_disk_or_read_only_dir_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    fit(load_config(overrides=tiny(tmp_path, "run", "training.stop_after=2")))
    real_save = torch.save
    for code, words in ((errno.ENOSPC, "disk full"), (errno.EROFS, "read-only")):

        def failing(obj, path, *args, _code=code, **kwargs):
            if str(path).endswith(STATE_FILE):
                raise OSError(_code, os.strerror(_code))
            return real_save(obj, path, *args, **kwargs)

        monkeypatch.setattr(torch, "save", failing)
        argv = ["train", "--resume", str(tmp_path / "run")]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "the previous checkpoint" in err and "intact" in err
        assert len(err.splitlines()) == 1
        with pytest.raises(CheckpointWriteError):
            fit(load_config(overrides=tiny(tmp_path, "run")), resume=tmp_path / "run")
        assert state(tmp_path / "run")["step"] == 2
        hidden = [
            p.name
            for p in (tmp_path / "run" / CHECKPOINT_VERSIONS_DIR).iterdir()
            if p.name[0] == "."
        ]
        assert hidden == []


def test_nan_before_any_checkpoint_says_none_exists(tmp_path):
    def poison(step, model):
        with torch.no_grad():
            next(model.parameters()).fill_(float("nan"))

    with pytest.raises(NonFiniteLossError, match="No checkpoint was written yet") as info:
        fit(load_config(overrides=tiny(tmp_path, "run", "training.steps=4")), on_step=poison)
    assert str(tmp_path / "run" / LATEST_CHECKPOINT) not in str(info.value)


# -- run directories ----------------------------------------------------------------------
def test_a_directory_holding_a_run_is_refused(tmp_path, capsys):
    cfg = load_config(
        overrides=tiny(tmp_path, "run", "training.steps=1", "training.warmup_steps=1")
    )
    fit(cfg)
    with pytest.raises(RunDirError, match="already holds a run") as info:
        fit(cfg)
    message = str(info.value)
    assert str(tmp_path / "run") in message and "--resume" in message and "--overwrite" in message
    argv = ["train"] + [
        a
        for o in tiny(tmp_path, "run", "training.steps=1", "training.warmup_steps=1")
        for a in ("--set", o)
    ]
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert main([*argv, "--overwrite"]) == 0
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == metrics.count("\n")


def test_a_run_without_a_checkpoint_is_not_told_to_resume(tmp_path):
    overrides = tiny(tmp_path, "run", "training.steps=1", "training.warmup_steps=1")
    fit(load_config(overrides=overrides))
    shutil.rmtree(tmp_path / "run" / "checkpoints")
    (tmp_path / "run" / LATEST_CHECKPOINT).unlink()  # logs and config left, no checkpoint
    with pytest.raises(RunDirError, match="already holds a run") as info:
        fit(load_config(overrides=overrides))
    message = str(info.value)
    assert "--resume" not in message and "no checkpoint to resume from" in message
    assert "--overwrite" in message


def test_default_run_names_do_not_collide(tmp_path, monkeypatch):
    import oemdm_core.runtime.run_dir as run_dir

    class Frozen(run_dir.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 1, 12, 0, 0)

    monkeypatch.setattr(run_dir, "datetime", Frozen)
    a, b = new_run_dir(tmp_path, "mdm"), new_run_dir(tmp_path, "mdm")
    assert a != b and a.is_dir() and b.is_dir()
    assert b.name == a.name + "-2"


def test_a_second_concurrent_run_fails_at_once_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.path[:0] = sys.argv[2:]\n"
            "from oemdm_core.runtime.run_dir import RunLock\n"
            "import time; lock = RunLock(sys.argv[1]).acquire(); print('locked', flush=True)\n"
            "time.sleep(120)",
            str(run),
            *sys.path,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        cfg = load_config(
            overrides=tiny(tmp_path, "run", "training.steps=1", "training.warmup_steps=1")
        )
        t0 = time.perf_counter()
        with pytest.raises(
            RunDirError, match=f"in use by another training run \\(pid {holder.pid}"
        ):
            fit(cfg)
        assert time.perf_counter() - t0 < 5
    finally:
        holder.kill()
        holder.wait()
    # The holder died: its lock file (still naming its pid) is stale and taken over.
    assert (run / LOCK_FILE).read_text().strip() == str(holder.pid)
    fit(cfg)


def test_the_lock_is_released_after_a_failed_run(tmp_path):
    def boom(step, model):
        raise RuntimeError("boom")

    cfg = load_config(overrides=tiny(tmp_path, "run", "training.steps=2"))
    with pytest.raises(RuntimeError):
        fit(cfg, on_step=boom)
    with RunLock(tmp_path / "run"):
        pass
