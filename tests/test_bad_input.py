"""Bad input gives clear errors (ValueError subclasses naming the value and what is valid)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import tiny_model, tiny_run

from oemdm_core import ConfigError, OeMDM, Registry, registry
from oemdm_core.cli import main
from oemdm_core.errors import CheckpointError, OeMDMWarning
from oemdm_core.runtime.checkpoint.store import STATE_FILE, find_checkpoint
from oemdm_core.runtime.experiment import load_config


@pytest.fixture(scope="module")
def model():
    return tiny_model({"name": "block", "block_size": 2})


def test_wrong_token_shape_names_expected_and_received(model):
    with pytest.raises(ValueError, match=r"shape \[B, L\], got \(4,\)"):
        model.nelbo(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \[B, L\], got \(1, 2, 4\)"):
        model.denoise(torch.zeros(1, 2, 4, dtype=torch.long))


def test_wrong_token_dtype(model):
    with pytest.raises(ValueError, match=r"integer tensor.*got dtype torch.float32"):
        model.nelbo(torch.zeros(2, 4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model.nelbo([[0, 1, 2, 0]])


def test_token_ids_out_of_range(model):
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 3\)"):
        model.nelbo(torch.tensor([[0, 1, 3, 0]]))  # 3 is the mask: not a clean token
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        model.denoise(torch.tensor([[0, 1, 4, 0]]))
    with pytest.raises(ValueError, match="token ids"):
        model.nelbo(torch.tensor([[0, -1, 2, 0]]))


def test_length_not_divisible_by_block_size():
    model = tiny_model({"name": "block", "block_size": 2}, length=6)
    with pytest.raises(ValueError, match="length 5 is not divisible by block_size 2"):
        model.nelbo(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="not divisible by block_size 4"):
        tiny_model({"name": "block", "block_size": 4}, length=6)


def test_length_beyond_the_backbone(model):
    with pytest.raises(ValueError, match="exceeds the backbone's max_length 4"):
        model.nelbo(torch.zeros(1, 6, dtype=torch.long))


@pytest.mark.parametrize(
    ("kind", "name", "options", "field"),
    [
        ("schedule", "polynomial", {"p": 0.0}, "p"),
        ("schedule", "polynomial", {"p": -1.5}, "p"),
        ("order", "block", {"block_size": 0}, "block_size"),
        ("sampler", "ancestral", {"steps": 0}, "steps"),
        ("sampler", "ancestral", {"top_p": 0.0}, "top_p"),
        ("sampler", "ancestral", {"top_p": 1.5}, "top_p"),
        ("backbone", "transformer", {"preset": "huge"}, "preset"),
    ],
)
def test_invalid_options_name_the_field(kind, name, options, field):
    with pytest.raises(ConfigError) as info:
        registry.build(kind, name, **options)
    message = str(info.value)
    assert f"{kind}[{name}].{field}" in message
    assert repr(next(iter(options.values()))) in message


@pytest.mark.parametrize(
    ("kind", "name", "options", "message"),
    [
        ("schedule", "polynomial", {"p": 0.0}, "schedule[polynomial].p: got 0.0; must be >= 0.5"),
        ("order", "block", {"block_size": 0}, "order[block].block_size: got 0; must be >= 1"),
        ("sampler", "ancestral", {"steps": 0}, "sampler[ancestral].steps: got 0; must be >= 1"),
        ("sampler", "topk", {"top_p": 0.0}, "sampler[topk].top_p: got 0.0; must be > 0"),
    ],
)
def test_direct_constructors_reject_bad_values_as_the_registry_does(kind, name, options, message):
    cls = registry.get(kind, name)
    for build in (lambda: cls(**options), lambda: registry.build(kind, name, **options)):
        with pytest.raises(ConfigError) as info:
            build()
        assert str(info.value).startswith(message)


def test_times_outside_unit_interval(model):
    x = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        model.nelbo(x, t=torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]"):
        model.denoise(x, torch.tensor([-0.1, 0.2]))
    with pytest.raises(ValueError, match=r"t must have shape \[2\], got \(3,\)"):
        model.nelbo(x, t=torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="floating"):
        model.nelbo(x, t=torch.tensor([0, 1]))


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_steps_must_be_a_positive_integer(model, steps):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        model.nelbo(torch.zeros(1, 4, dtype=torch.long), steps=steps)


def config(**overrides):
    cfg = {
        "vocab_size": 3,
        "length": 4,
        "backbone": {"name": "transformer", "preset": "tiny"},
        "order": {"name": "mdm"},
        "schedule": {"name": "linear"},
    }
    cfg.update(overrides)
    return cfg


@pytest.mark.parametrize(
    ("cfg", "path"),
    [
        (config(vocab=3), "vocab"),
        (config(order={"name": "block", "blocksize": 2}), "order.blocksize"),
        (config(schedule={"name": "polynomial", "q": 2}), "schedule.q"),
        (
            config(backbone={"name": "transformer", "preset": "tiny", "layers": 2}),
            "backbone.layers",
        ),
    ],
)
def test_from_config_unknown_key_is_one_line_with_dotted_path(cfg, path):
    with pytest.raises(ConfigError) as info:
        OeMDM.from_config(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: unknown key")


def test_from_config_bad_value_names_the_path():
    with pytest.raises(ConfigError, match=r"order.block_size: got 0; must be >= 1"):
        OeMDM.from_config(config(order={"name": "block", "block_size": 0}))
    with pytest.raises(ConfigError, match=r"vocab_size: got 0; must be > 0"):
        OeMDM.from_config(config(vocab_size=0))
    with pytest.raises(LookupError, match="unknown order 'blok'.*did you mean 'block'"):
        OeMDM.from_config(config(order={"name": "blok"}))


def test_sampler_rejects_bad_requests(model):
    sampler = registry.build("sampler", "ancestral", steps=4)
    with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
        sampler.sample(model, num_samples=0)
    with pytest.raises(ValueError, match=r"length must lie in \[1, 4\], got 9"):
        sampler.sample(model, num_samples=1, length=9)
    with pytest.raises(ValueError, match=r"fixed token ids must lie in \[0, 3\)"):
        sampler.sample(model, num_samples=1, fixed=torch.tensor([0, 5, -1, -1]))


# -- issue 12: every bad input is one line naming the value; nothing is accepted silently --
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run directory with one checkpoint (2 steps of a tiny mdm model)."""
    from oemdm_core.runtime.trainer import fit

    tmp = tmp_path_factory.mktemp("trained")
    fit(load_config(overrides=tiny_run(tmp, "run", "training.steps=2")))
    return tmp / "run"


@pytest.fixture
def run_copy(trained, tmp_path):
    """A private copy of the trained run (symlinks kept) that a test may damage."""
    copy = tmp_path / "run"
    shutil.copytree(trained, copy, symlinks=True)
    return copy


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("command", ["eval", "sample"])
def test_a_bad_device_is_one_line(trained, capsys, command):
    assert main([command, str(trained), "--device", "foo"]) == 2
    line = one_error_line(capsys)
    assert "--device: got 'foo'; expected auto, cpu, cuda" in line


def test_a_bad_training_device_is_one_line(tmp_path, capsys):
    argv = ["train"] + [
        a for o in tiny_run(tmp_path, "run", "training.device=foo") for a in ("--set", o)
    ]
    assert main(argv) == 2
    assert "training.device: got 'foo'; expected auto, cpu, cuda" in one_error_line(capsys)


@pytest.mark.parametrize(
    ("damaged", "words"),
    [
        ("model/model.safetensors", "corrupt or truncated"),
        ("model/config.json", "not valid JSON"),
        ("experiment.json", "not valid JSON"),
    ],
)
def test_a_corrupt_checkpoint_file_is_named(run_copy, capsys, damaged, words):
    path = find_checkpoint(run_copy) / damaged
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    assert main(["eval", str(run_copy)]) == 2
    line = one_error_line(capsys)
    assert damaged.split("/")[-1] in line and words in line


def test_a_corrupt_training_state_is_named(run_copy, capsys):
    path = find_checkpoint(run_copy) / STATE_FILE
    path.write_bytes(path.read_bytes()[:100])
    from oemdm_core.runtime.checkpoint.store import load_training_state

    with pytest.raises(CheckpointError, match=f"{STATE_FILE}: cannot be read, .*corrupt"):
        load_training_state(path.parent)
    assert main(["train", "--resume", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert f"oemdm: warning: skipping checkpoint {path.parent}" in err
    assert "error: --resume" in err and "no readable checkpoint" in err


def test_a_config_that_does_not_match_its_weights(run_copy, capsys):
    config = find_checkpoint(run_copy) / "model" / "config.json"
    data = json.loads(config.read_text())
    data["model"]["vocab_size"] += 5  # hand-edited
    config.write_text(json.dumps(data))
    assert main(["eval", str(run_copy)]) == 2
    line = one_error_line(capsys)
    assert "model.safetensors does not match" in line and "config.json" in line
    assert "vocab_size=" in line and "has shape" in line


def test_a_length_that_disagrees_with_the_trained_one(run_copy, capsys):
    config = find_checkpoint(run_copy) / "model" / "config.json"
    data = json.loads(config.read_text())
    data["model"]["length"] = 8  # trained at data.length=16 (RoPE tables follow length)
    config.write_text(json.dumps(data))
    assert main(["sample", str(run_copy)]) == 2
    line = one_error_line(capsys)
    assert "length 8 disagrees with the data.length 16" in line


def test_any_other_exception_is_one_line_with_a_debug_hint(monkeypatch, capsys):
    import oemdm_core.cli.plugins as plugins

    def boom(args):
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr(plugins, "run", boom)
    assert main(["plugins"]) == 1
    line = one_error_line(capsys)
    assert line == (
        "oemdm plugins: error: RuntimeError: kaboom; second line "
        "(run with --debug for the traceback)"
    )
    with pytest.raises(RuntimeError, match="kaboom"):
        main(["--debug", "plugins"])
    with pytest.raises(RuntimeError, match="kaboom"):
        main(["plugins", "--debug"])


def test_nan_times_are_refused(model):
    with pytest.raises(ValueError, match=r"t must lie in \[0, 1\]; got NaN at index 1"):
        model.nelbo(torch.zeros(2, 4, dtype=torch.long), t=torch.tensor([0.5, float("nan")]))


@pytest.mark.parametrize(
    "argv",
    [
        ["--num-times", "0"],
        ["--num-times", "-2"],
        ["--steps", "0"],
        ["--max-sequences", "-1"],
        ["--length", "0"],
    ],
)
def test_eval_refuses_zero_or_negative_counts(trained, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["eval", str(trained), *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[0]}: got {argv[1]}; must be an integer" in err


def test_prompt_characters_outside_the_vocabulary_are_named(trained, capsys):
    assert main(["sample", str(trained), "-n", "1", "--prompt", "def 中é"]) == 2
    line = one_error_line(capsys)
    assert "--prompt: characters outside the tokenizer's vocabulary" in line
    assert "'中' (U+4E2D)" in line


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("training.steps=true", "training.steps"),
        ("training.lr=false", "training.lr"),
        ("evaluation.num_times=true", "evaluation.num_times"),
        ("training.betas=[true, 0.9]", "training.betas"),
    ],
)
def test_booleans_are_not_numbers(override, path):
    with pytest.raises(ConfigError, match=f"{path}: got .*; expected (a number|numbers), not"):
        load_config(overrides=[override])


def test_booleans_are_not_numbers_in_component_options():
    with pytest.raises(
        ConfigError, match=r"order\[block\].block_size: got True; expected a number"
    ):
        registry.build("order", "block", block_size=True)
    with pytest.raises(ConfigError, match=r"vocab_size: got True; expected a number"):
        OeMDM.from_config(config(vocab_size=True))


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_duplicate_config_keys_are_refused(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    if suffix == ".yaml":
        path.write_text("training:\n  steps: 10\n  lr: 0.1\n  steps: 20\n")
        pattern = r"c.yaml: line 4: duplicate key 'steps' \(first given on line 2\)"
    else:
        path.write_text('{"training": {"steps": 10, "steps": 20}}')
        pattern = "c.json: duplicate key 'steps'"
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)


def test_warmup_longer_than_training_is_warned(tmp_path, capsys):
    argv = ["config", "show", "--set", "training.steps=50", "--set", "training.warmup_steps=100"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "oemdm: warning: training.warmup_steps=100 is more than training.steps=50" in err


def test_a_hook_lookalike_in_a_plugin_is_warned():
    import types

    from oemdm_core import Registry, hookimpl

    plugin = types.ModuleType("typo_plugin")

    @hookimpl
    def register_order(register):  # the spec is register_orders
        pass

    def register_schedules(register):  # no @hookimpl
        pass

    plugin.register_order = register_order
    plugin.register_schedules = register_schedules
    reg = Registry(entry_points=False)
    with pytest.warns(OeMDMWarning) as caught:
        reg.register_plugin(plugin, name="typo")
    messages = [str(w.message) for w in caught]
    assert any(
        "'register_order' matches no hook" in m and "did you mean 'register_orders'" in m
        for m in messages
    )
    assert any("'register_schedules' is not decorated with @hookimpl" in m for m in messages)


def test_unknown_disabled_plugin_names_are_warned_in_every_command(monkeypatch, capsys):
    monkeypatch.setenv("OEMDM_DISABLE_PLUGINS", "lomdn")
    monkeypatch.setattr(sys.modules["oemdm_core.plugin.registry"], "registry", Registry())
    assert main(["config", "show", "--set", "model.order=mdm"]) == 0
    err = capsys.readouterr().err
    assert "OEMDM_DISABLE_PLUGINS names 'lomdn', which no installed plugin is called" in err
    assert "did you mean 'lomdm'?" in err


def test_a_disabled_component_says_by_which_variable(monkeypatch):
    monkeypatch.setenv("OEMDM_DISABLE_PLUGINS", "lomdm")
    with pytest.raises(
        LookupError,
        match=(
            "order 'lomdm' is provided by plugin 'lomdm', which is disabled by "
            "OEMDM_DISABLE_PLUGINS=lomdm"
        ),
    ):
        Registry().get("order", "lomdm")


def test_a_sampler_that_cannot_serve_the_order_fails_before_training(tmp_path):
    from oemdm_core.runtime.trainer import fit

    steps = []
    cfg = load_config(
        overrides=tiny_run(tmp_path, "run", "sampling.sampler={name: ar}", "sampling.num_samples=1")
    )
    with pytest.raises(ConfigError, match="sampling.sampler: sampler 'ar' cannot serve this model"):
        fit(cfg, on_step=lambda step, model: steps.append(step))
    assert steps == []


def test_sample_streams_in_batches_with_a_progress_bar(trained, monkeypatch, capsys, tmp_path):
    from oemdm_core.interfaces.sampler import Sampler

    sizes = []
    real_sample = {}

    def spy(cls):
        original = cls.sample

        def sample(self, model, num_samples, *args, **kwargs):
            sizes.append(num_samples)
            return original(self, model, num_samples, *args, **kwargs)

        real_sample[cls] = original
        monkeypatch.setattr(cls, "sample", sample)

    for cls in Sampler.__subclasses__():
        spy(cls)
    out = tmp_path / "samples.txt"
    argv = [
        "sample",
        str(trained),
        "-n",
        "7",
        "--batch-size",
        "3",
        "--set",
        "steps=2",
        "-o",
        str(out),
    ]
    assert main(argv) == 0
    assert sizes == [3, 3, 1]
    assert out.read_text().count("--- sample") == 7
    assert "--- sample 6 ---" in out.read_text()
    err = capsys.readouterr().err
    assert "sample" in err and "7/7" in err  # the progress bar


def test_sample_out_of_memory_is_one_line(trained, monkeypatch, capsys):
    from oemdm_core.interfaces.sampler import Sampler

    def oom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.9 GiB")

    for cls in Sampler.__subclasses__():
        monkeypatch.setattr(cls, "sample", oom)
    assert main(["sample", str(trained), "-n", "20000", "--no-progress"]) == 2
    line = one_error_line(capsys)
    assert "out of memory drawing a batch of 256 samples" in line and "--batch-size" in line


def test_eval_shows_progress(trained, capsys):
    assert main(["eval", str(trained)]) == 0
    assert "eval" in capsys.readouterr().err


def test_the_cli_does_not_import_torch_until_a_command_needs_it():
    code = (
        "import sys; from oemdm_core.cli import build_parser, main; build_parser(); "
        "main(['config', 'show']); print('torch' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_a_backbone_without_the_size_fields_is_told_which_the_model_passes():
    from pydantic import Field

    from oemdm_core import Backbone, DenoiserOutput, hookimpl
    from oemdm_core import Options as BaseOptions

    class Sizeless(Backbone):
        name = "sizeless"

        class Options(BaseOptions):
            d_model: int = Field(default=8, ge=1, description="Width.")

        def forward(self, tokens, t=None):
            return DenoiserOutput(logits=torch.zeros(*tokens.shape, 3), hidden=None)

    class Plugin:
        @hookimpl
        def register_backbones(self, register):
            register(Sizeless)

    reg = Registry(entry_points=True)
    reg.register_plugin(Plugin(), name="sizeless")
    cfg = {"vocab_size": 3, "length": 4, "backbone": {"name": "sizeless"}}
    with pytest.raises(ConfigError) as info:
        OeMDM.from_config(cfg, registry=reg)
    message = str(info.value)
    assert "\n" not in message and message.startswith("backbone[sizeless]: ")
    assert "do not declare max_length, vocab_size" in message
    assert "passes max_length, vocab_size to every backbone" in message
