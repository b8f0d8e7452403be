"""No call destroys a user's files: save_pretrained refuses what it did not write, a resume of
a finished run keeps its checkpoint, --overwrite removes only a run it recognises, and a
failed start leaves nothing that blocks the retry (issue 24, items 1, 2 and 7)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import tiny_model, tiny_run

from oemdm_core import OeMDM
from oemdm_core.cli import main


def as_args(overrides: list[str]) -> list[str]:
    return [a for item in overrides for a in ("--set", item)]


# -- save_pretrained ------------------------------------------------------------------------
def test_save_pretrained_refuses_a_run_directory_and_keeps_it(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "step-00000004").mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(FileExistsError, match="not empty and is not a saved model"):
        tiny_model().save_pretrained(run)
    with pytest.raises(FileExistsError, match="not empty"):
        tiny_model().save_pretrained(run, overwrite=True)  # overwrite= is for saved models only
    assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n'
    assert (run / "checkpoints" / "step-00000004").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no hidden temporaries


def test_save_pretrained_refuses_a_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(FileExistsError, match="is a file"):
        tiny_model().save_pretrained(target, overwrite=True)
    assert target.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_save_pretrained_replaces_a_saved_model_only_with_overwrite(tmp_path):
    path = tmp_path / "m"
    tiny_model().save_pretrained(path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        tiny_model().save_pretrained(path)
    other = tiny_model(order="ar", length=5)
    other.save_pretrained(path, overwrite=True)
    loaded = OeMDM.from_pretrained(path)
    assert loaded.length == 5 and loaded.order.name == "ar"
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]


def test_save_pretrained_into_the_current_empty_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = tiny_model()
    model.save_pretrained(".")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = OeMDM.from_pretrained(".")
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


# -- resuming a finished run ----------------------------------------------------------------
def test_resume_of_a_finished_run_keeps_its_checkpoint_and_logs_nothing(tmp_path, capsys):
    # periodic checkpoint + eval at the last step, then the final one (step-4.1) supersedes it
    overrides = tiny_run(tmp_path, "run", "training.checkpoint_every=2", "training.eval_every=2")
    assert main(["train", *as_args(overrides)]) == 0
    run = tmp_path / "run"
    metrics = (run / "metrics.jsonl").read_text()
    target = os.readlink(run / "checkpoint")
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "already finished at step 4" in err
    assert os.readlink(run / "checkpoint") == target
    OeMDM.from_pretrained(run / "checkpoint" / "model")  # the link is not dangling
    assert (run / "metrics.jsonl").read_text() == metrics  # no duplicate eval line


def test_a_checkpoint_rewritten_at_the_same_step_is_the_one_kept(tmp_path):
    from oemdm_core.runtime.checkpoint.store import save_versioned_checkpoint

    model = tiny_model()
    args = (model, {"name": "char"}, {}, {"step": 4})
    for _ in range(3):
        written = save_versioned_checkpoint(tmp_path, 4, *args, keep=2)
        assert written.is_dir()
        assert (tmp_path / "checkpoint").resolve() == written.resolve()
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == [written.name]


# -- --overwrite and failed starts ----------------------------------------------------------
def test_overwrite_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    mine = tmp_path / "run"
    (mine / "tb").mkdir(parents=True)
    (mine / "tb" / "my-notes.txt").write_text("mine")
    (mine / "config.yaml").write_text("my: own\n")
    code = main(["train", "--overwrite", *as_args(tiny_run(tmp_path))])
    assert code == 2
    err = capsys.readouterr().err
    assert "not a run directory written by oemdm train" in err and str(mine) in err
    assert (mine / "tb" / "my-notes.txt").read_text() == "mine"
    assert (mine / "config.yaml").read_text() == "my: own\n"


def test_overwrite_starts_over_in_a_run_it_wrote(tmp_path):
    overrides = as_args(tiny_run(tmp_path, "run", "training.steps=2"))
    assert main(["train", *overrides]) == 0
    assert main(["train", "--overwrite", *overrides]) == 0
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 2]


def test_a_failed_start_leaves_no_config_behind_and_the_retry_runs(tmp_path, capsys):
    bad = tiny_run(tmp_path, "run", "data.length=100000000")  # longer than the corpus
    assert main(["train", *as_args(bad)]) == 2
    assert "fewer than one sequence" in capsys.readouterr().err
    assert not (tmp_path / "run" / "config.yaml").exists()
    assert main(["train", *as_args(tiny_run(tmp_path, "run", "training.steps=1"))]) == 0
