"""Bad input gives clear errors (ValueError subclasses naming the value and what is valid)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_model

from oemdm_core import ConfigError, OeMDM, registry


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


def test_direct_constructors_reject_bad_values():
    with pytest.raises(ValueError, match="p > 0"):
        registry.get("schedule", "polynomial")(p=0.0)
    with pytest.raises(ValueError, match="block_size must be >= 1, got 0"):
        registry.get("order", "block")(block_size=0)


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
