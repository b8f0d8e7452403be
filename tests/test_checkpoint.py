"""Checkpoints of training runs: exact resume, refusal on config changes, atomicity,
and the eval / sample commands that read them."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_run

from oemdm_core.cli import main
from oemdm_core.errors import ConfigError
from oemdm_core.runtime.checkpoint.store import LATEST_CHECKPOINT, STATE_FILE, find_checkpoint
from oemdm_core.runtime.experiment import load_config
from oemdm_core.runtime.trainer import fit


def tiny(tmp_path, run: str, *extra: str):
    return tiny_run(
        tmp_path,
        run,
        "model.backbone={name: transformer, preset: tiny, dropout: 0.1}",
        "training.steps=6",
        "training.grad_accum=2",
        "training.warmup_steps=2",
        *extra,
    )


def state(run_dir):
    return torch.load(run_dir / LATEST_CHECKPOINT / STATE_FILE, weights_only=False)


def test_resume_gives_identical_weights(tmp_path):
    """6 steps straight == 3 steps, resume, 3 steps (dropout on, so RNG states matter too)."""
    straight = fit(load_config(overrides=tiny(tmp_path, "a")))
    fit(load_config(overrides=tiny(tmp_path, "b", "training.stop_after=3")))
    assert state(tmp_path / "b")["step"] == 3
    argv = ["train", "--resume", str(tmp_path / "b")]
    assert main(argv) == 0  # the CLI resumes from the saved config
    a, b = state(tmp_path / "a"), state(tmp_path / "b")
    assert b["step"] == straight.step == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]:
        assert torch.equal(a["ema"][key], b["ema"][key]), key
    assert a["scheduler"] == b["scheduler"]


def test_resume_with_a_different_config_is_refused(tmp_path):
    fit(load_config(overrides=tiny(tmp_path, "run", "training.stop_after=2")))
    cfg = load_config(overrides=tiny(tmp_path, "run", "training.lr=0.5", "data.length=8"))
    with pytest.raises(ConfigError, match=r"different config: data.length: 16 → 8; training.lr"):
        fit(cfg, resume=tmp_path / "run")
    argv = ["train", "--resume", str(tmp_path / "run"), "--set", "training.lr=0.5"]
    assert main(argv) == 2
    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        fit(cfg, resume=tmp_path / "nowhere")


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    fit(load_config(overrides=tiny(tmp_path, "run", "training.stop_after=2")))
    before = state(tmp_path / "run")
    real_save = torch.save

    def crash(obj, path, *args, **kwargs):
        if str(path).endswith(STATE_FILE):
            raise OSError("disk full")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        fit(load_config(overrides=tiny(tmp_path, "run")), resume=tmp_path / "run")
    monkeypatch.setattr(torch, "save", real_save)
    after = state(tmp_path / "run")
    assert after["step"] == before["step"] == 2
    leftovers = [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_eval_is_deterministic_and_writes_json(tmp_path, capsys):
    fit(load_config(overrides=tiny(tmp_path, "run", "training.steps=2")))
    out = tmp_path / "eval.json"
    assert main(["eval", str(tmp_path / "run"), "--json", str(out)]) == 0
    first = json.loads(out.read_text())
    table = capsys.readouterr().out
    assert "bits_per_token" in table and "deterministic" in table
    assert main(["eval", str(tmp_path / "run" / LATEST_CHECKPOINT), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["bits_per_token"] == first["bits_per_token"]
    assert first["num_sequences"] == 4 and first["tokens_per_sequence"] == 16
    assert main(["eval", str(tmp_path / "run"), "--length", "64"]) == 2
    assert "exceeds the model's maximum sequence length 16" in capsys.readouterr().err


def test_sample_prints_text_and_rejects_long_lengths(tmp_path, capsys):
    fit(load_config(overrides=tiny(tmp_path, "run", "training.steps=2")))
    argv = [
        "sample",
        str(tmp_path / "run"),
        "-n",
        "2",
        "--sampler-set",
        "steps=4",
        "--prompt",
        "def",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("--- sample") == 2
    assert "--- sample 0 ---\ndef" in out
    assert main(["sample", str(tmp_path / "run"), "--length", "64"]) == 2
    assert "exceeds the model's maximum sequence length 16" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "run"), "--sampler-set", "stepz=4"]) == 2
    assert "stepz: unknown key" in capsys.readouterr().err
    # the old spelling still works until 0.3, and says so on stderr
    assert (
        main(["sample", str(tmp_path / "run"), "-n", "1", "--no-progress", "--set", "steps=4"]) == 0
    )
    err = capsys.readouterr().err
    assert "oemdm: warning: oemdm sample --set is deprecated and will be removed in 0.3" in err
    assert main(["sample", str(tmp_path / "run"), "--set", "stepz=4"]) == 2
    assert "stepz: unknown key" in capsys.readouterr().err


def test_find_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*missing"):
        find_checkpoint(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="is not a checkpoint written by `oemdm train`"):
        find_checkpoint(tmp_path)


def test_sample_show_order_prints_the_step_of_each_token(tmp_path, capsys):
    fit(load_config(overrides=tiny(tmp_path, "run", "training.steps=2")))
    argv = ["sample", str(tmp_path / "run"), "-n", "2", "--no-progress", "--sampler-set", "steps=4"]
    assert main([*argv, "--prompt", "def", "--show-order"]) == 0
    lines = capsys.readouterr().out.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("order: ")]
    assert len(headers) == 2
    for at in headers:
        steps = int(lines[at].split()[1])
        assert 1 <= steps <= 4 and lines[at].endswith("denoiser calls for the batch)")
        assert lines[at + 1].startswith("token d e f") and lines[at + 2].startswith("step  - - -")
        cells = lines[at + 2].split()[1:]
        assert len(cells) == 16  # one per position, on one line (16 short tokens)
        assert max(int(c) for c in cells if c != "-") == steps - 1
    # Without the flag: the text only.
    assert main(argv) == 0
    assert "order: " not in capsys.readouterr().out


def test_a_checkpoint_needing_a_disabled_plugin_says_disabled_not_install(tmp_path):
    from conftest import tiny_model

    from oemdm_core import MissingPluginError, OeMDM, Registry

    tiny_model(order="ar").save_pretrained(tmp_path / "model")
    with pytest.raises(MissingPluginError) as info:
        OeMDM.from_pretrained(tmp_path / "model", registry=Registry(disabled=["ar"]))
    message = str(info.value)
    assert "order 'ar' of plugin 'ar', which is disabled by OEMDM_DISABLE_PLUGINS" in message
    assert "install" not in message
