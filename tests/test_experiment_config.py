"""The experiment config: defaults, files, dotted overrides, errors, example configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from oemdm_core import OeMDM, registry
from oemdm_core.cli import main
from oemdm_core.errors import ConfigError
from oemdm_core.runtime.config_dicts import config_differences
from oemdm_core.runtime.experiment import (
    ExperimentConfig,
    check_components,
    commented_config_yaml,
    load_config,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"


def test_defaults_are_the_main_job():
    cfg = ExperimentConfig()
    assert cfg.model.order.name == "lomdm"
    assert cfg.data.dataset.name == "pydoc"
    assert cfg.data.tokenizer.name == "char"
    assert cfg.model.backbone.name == "transformer"


def test_dotted_overrides_sections_and_components():
    cfg = load_config(
        overrides=[
            "training.steps=7",
            "training.betas=[0.8, 0.9]",
            "model.order=mdm",
            "model.backbone.d_model=64",
            "data.dataset.validation=0.1",
        ]
    )
    assert cfg.training.steps == 7
    assert cfg.training.betas == (0.8, 0.9)
    assert cfg.model.order.name == "mdm" and cfg.model.order.options == {}
    assert cfg.model.backbone.options["d_model"] == 64
    assert cfg.model.backbone.options["n_layers"] == 2  # the rest of the default kept
    assert cfg.data.dataset.options == {"validation": 0.1}
    cfg = load_config(overrides=["model.order=block", "model.order.block_size=4"])
    assert cfg.model.order.options == {"block_size": 4}


def test_unknown_key_names_the_dotted_path_and_allowed_keys():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["training.stpes=3"])
    message = str(info.value)
    assert message.startswith("training.stpes: unknown key; valid keys: ")
    assert "did you mean 'steps'" in message
    assert "\n" not in message


def test_bad_value_names_the_path_and_what_is_allowed():
    with pytest.raises(ConfigError, match=r"training.steps: got -1; .*greater than 0"):
        load_config(overrides=["training.steps=-1"])
    with pytest.raises(ConfigError, match=r"data.protocol: got 'wrapped'; 'packed' or 'padded'"):
        load_config(overrides=["data.protocol=wrapped"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_config(overrides=["training.steps"])
    with pytest.raises(ConfigError, match="training.steps is a value"):
        load_config(overrides=["training.steps.x=1"])


def test_component_options_are_checked_against_the_registry():
    cfg = load_config(overrides=["model.order=block", "model.order.blok_size=4"])
    with pytest.raises(ConfigError, match=r"model.order.blok_size: unknown key.*block_size"):
        check_components(cfg, registry)
    cfg = load_config(overrides=["model.order=mdn"])
    with pytest.raises(ConfigError, match=r"model.order.name: unknown order 'mdn'.*'mdm'"):
        check_components(cfg, registry)
    cfg = load_config(overrides=["model.backbone.max_length=64"])
    with pytest.raises(ConfigError, match="model.backbone.max_length: set from the data.length"):
        check_components(cfg, registry)


def test_yaml_and_json_files(tmp_path):
    (tmp_path / "a.yaml").write_text("training:\n  steps: 3\nmodel:\n  order: ar\n")
    (tmp_path / "b.json").write_text(json.dumps({"training": {"lr": 0.5}}))
    assert load_config(tmp_path / "a.yaml").model.order.name == "ar"
    assert load_config(tmp_path / "b.json", ["training.steps=2"]).training.lr == 0.5
    (tmp_path / "c.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(FileNotFoundError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "d.yaml").write_text("training: {steps: 1\n")
    with pytest.raises(ConfigError, match="d.yaml: not valid yaml"):
        load_config(tmp_path / "d.yaml")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_load_and_validate(path):
    cfg = load_config(path)
    check_components(cfg, registry)
    if "gpu" not in path.name:  # the CPU examples build a model
        cfg = load_config(path, ["data.length=32"])
        keep = ("attention", "block_size")
        options = {k: v for k, v in cfg.model.backbone.options.items() if k in keep}
        spec = {"name": "transformer", "preset": "tiny", **options}
        model = OeMDM.from_config(
            {**cfg.model_config_for(20).model_dump(), "backbone": spec}, registry=registry
        )
        assert torch.isfinite(model.nelbo(torch.randint(0, 20, (2, 32))).total).all()


def test_example_gpu_configs_follow_the_protocols():
    owt = load_config(EXAMPLES / "owt_gpu.yaml")
    lm1b = load_config(EXAMPLES / "lm1b_gpu.yaml")
    assert (owt.data.length, owt.data.protocol) == (1024, "packed")
    assert (lm1b.data.length, lm1b.data.protocol) == (128, "padded")
    for cfg in (owt, lm1b):
        assert cfg.model.backbone.options["preset"] == "base"  # 12 x 768


def test_config_differences_ignore_resumable_keys():
    a = ExperimentConfig().to_dict()
    b = load_config(overrides=["training.lr=0.1", "training.stop_after=3", "model.order=mdm"])
    assert config_differences(a, b.to_dict()) == ["model.order.name", "training.lr"]


def test_commented_config_yaml_and_config_show(capsys):
    text = commented_config_yaml()
    assert "steps: 1500  # Optimizer steps" in text
    assert main(["config", "show", "--set", "training.steps=9"]) == 0
    assert "steps: 9  # Optimizer steps" in capsys.readouterr().out
    assert main(["config", "show", "--set", "training.stepz=9"]) == 2
    err = capsys.readouterr().err
    assert "training.stepz: unknown key" in err
