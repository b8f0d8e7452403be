"""`oemdm train` from the command line: output, errors, and the main job."""

from __future__ import annotations

import subprocess
import sys

import pytest

from oemdm_core.cli import main


def sets(tmp_path, *extra: str) -> list[str]:
    items = [
        "model.order=mdm",
        "model.backbone={name: transformer, preset: tiny}",
        "data.length=16",
        f"data.cache_dir={tmp_path / 'cache'}",
        "training.steps=2",
        "training.batch_size=2",
        "training.progress=false",
        f"training.run_dir={tmp_path / 'run'}",
        "evaluation.max_sequences=2",
        "evaluation.num_times=1",
        "sampling.sampler.steps=4",
        "sampling.num_samples=2",
        *extra,
    ]
    return [a for item in items for a in ("--set", item)]


def test_train_prints_eval_samples_checkpoint_and_tensorboard(tmp_path, capsys):
    assert main(["train", *sets(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "step 2: validation" in out and "bits/token" in out
    assert out.count("--- sample") == 2
    assert f"checkpoint: {tmp_path / 'run' / 'checkpoint'}" in out
    assert f"tensorboard --logdir {tmp_path / 'run' / 'tb'}" in out
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "order:\n    name: mdm" in saved  # the resolved config is in the run dir


def test_train_with_a_config_file(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("training:\n  steps: 1\n")
    assert main(["train", "-c", str(tmp_path / "c.yaml"), *sets(tmp_path, "training.steps=1")]) == 0
    assert "step 1: validation" in capsys.readouterr().out


def test_train_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", "--set", "training.stpes=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("oemdm train: error: training.stpes: unknown key; valid keys:")
    assert len(err.splitlines()) == 1
    assert main(["train", "-c", str(tmp_path / "missing.yaml")]) == 2
    assert f"config file not found: {tmp_path / 'missing.yaml'}" in capsys.readouterr().err
    missing = tmp_path / "none.txt"
    argv = ["train", *sets(tmp_path, f"data.dataset={{name: text-files, paths: ['{missing}']}}")]
    assert main(argv) == 2
    assert f"data file not found: {missing}" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert "no checkpoint in" in capsys.readouterr().err


def test_train_help_lists_the_options():
    out = subprocess.run(
        [sys.executable, "-m", "oemdm_core.cli", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--resume" in out and "--set" in out and "--config" in out


@pytest.mark.slow
def test_the_main_job_runs_with_no_arguments(tmp_path):
    """`oemdm train` with the default config (LoMDM on pydoc), as a user runs it."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "oemdm_core.cli",
            "train",
            "--set",
            f"training.run_dir={tmp_path}/run",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bits/token" in proc.stdout and "--- sample 0 ---" in proc.stdout
    assert (tmp_path / "run" / "checkpoint" / "model" / "model.safetensors").is_file()
