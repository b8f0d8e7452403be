"""The first SIGINT / SIGTERM stops `oemdm train` in every phase with exit code 130 / 143
(issue 24, item 5): start-up (also in a background job, which inherits SIGINT as ignored),
the final evaluation and the end-of-training sampling. Each case runs the command in a
subprocess that signals itself at the start of the phase (a patched function), so the
signal lands in that phase every time; every run is bounded by a timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import tiny_run

# The patched function sends the signal to its own process, then does its work.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import oemdm_core.cli.train as train_cli
    import oemdm_core.runtime.evaluation.likelihood as likelihood
    import oemdm_core.runtime.training_run as training_run
    from oemdm_core.cli import main
    from oemdm_core.plugin.registry import registry

    phase, signum = sys.argv[1], getattr(signal, sys.argv[2])

    def signalling(function):
        def wrapper(*args, **kwargs):
            os.kill(os.getpid(), signum)
            return function(*args, **kwargs)
        return wrapper

    if phase == "start-up":
        train_cli.resolve_config = signalling(train_cli.resolve_config)
    elif phase == "evaluation":
        training_run.evaluate = signalling(likelihood.evaluate)
    elif phase == "sampling":
        cls = registry.get("sampler", "ancestral")
        cls.sample = signalling(cls.sample)
    sys.exit(main(["train", *sys.argv[3:]]))
    """
)


def run_phase(tmp_path, phase: str, signum: signal.Signals, background: bool = False):
    overrides = tiny_run(tmp_path, "run", "sampling.num_samples=2", "sampling.sampler.steps=4")
    argv = [sys.executable, "-c", SCRIPT, phase, signum.name]
    argv += [a for item in overrides for a in ("--set", item)]

    def preexec():
        if background:  # what a shell does for a job started with `&`
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=180, preexec_fn=preexec, env=env
    )
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background-job"])
def test_a_signal_during_start_up_stops_at_once(tmp_path, background):
    code, err = run_phase(tmp_path, "start-up", signal.SIGINT, background)
    assert code == 130, err
    assert "interrupted by SIGINT" in err
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing was trained


def test_sigterm_during_the_final_evaluation_stops_it(tmp_path):
    code, err = run_phase(tmp_path, "evaluation", signal.SIGTERM)
    assert code == 143, err
    assert "interrupted by SIGTERM during the final evaluation" in err
    assert "checkpoint of step 4 saved" in err and "--resume" in err
    assert (tmp_path / "run" / "checkpoints" / "step-00000004").is_dir()


def test_sigint_during_the_end_of_training_sampling_stops_it(tmp_path):
    code, err = run_phase(tmp_path, "sampling", signal.SIGINT)
    assert code == 130, err
    assert "interrupted by SIGINT while drawing samples" in err
    assert "final checkpoint (step 4) is saved" in err


def test_a_signal_during_a_periodic_evaluation_checkpoints_the_step(tmp_path, monkeypatch):
    from oemdm_core.runtime import training_run
    from oemdm_core.runtime.experiment import load_config
    from oemdm_core.runtime.interrupt import Interrupted
    from oemdm_core.runtime.trainer import fit

    real = training_run.evaluate

    def interrupting(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(training_run, "evaluate", interrupting)
    cfg = load_config(overrides=tiny_run(tmp_path, "run", "training.eval_every=2"))
    with pytest.raises(Interrupted, match="interrupted by SIGINT at step 2; checkpoint saved"):
        fit(cfg)
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "eval/" not in metrics  # the evaluation stopped at once, nothing of it logged
    assert (tmp_path / "run" / "checkpoints" / "step-00000002").is_dir()
