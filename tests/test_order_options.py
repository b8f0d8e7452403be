"""How an order trains is defined once: in its frozen options, read through properties.

A built component's options cannot be changed, the training declarations of an order
(`shared_time`, `times`, `t_min`, `feature_gradient`, `needs_features`, `num_draws`) are read
from those options and cannot be assigned, and a model has one block size, the order's: a
block-causal backbone configured with another one is refused with one line naming both.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from oemdm_core import ConfigError, OeMDM, registry


def model_config(order, **backbone):
    return {
        "vocab_size": 3,
        "length": 8,
        "backbone": {"name": "transformer", "preset": "tiny", **backbone},
        "order": order,
        "schedule": {"name": "linear"},
    }


@pytest.mark.parametrize(
    ("kind", "name", "field", "value"),
    [
        ("order", "block", "block_size", 2),
        ("order", "lomdm", "t_min", 0.1),
        ("order", "positional", "K", 3),
        ("schedule", "polynomial", "p", 3.0),
        ("sampler", "ancestral", "steps", 3),
        ("estimator", "generic", "times", "uniform"),
    ],
)
def test_options_cannot_be_changed_after_construction(kind, name, field, value):
    component = registry.build(kind, name)
    before = component.options.model_dump()
    with pytest.raises(ValidationError, match="frozen"):
        setattr(component.options, field, value)
    assert component.options.model_dump() == before


def test_lomdm_training_declarations_follow_its_options():
    order = registry.build(
        "order",
        "lomdm",
        K=3,
        shared_time=False,
        t_min=0.01,
        times="uniform",
        stop_gradient=False,
        features="encoder",
    )
    assert (order.num_draws, order.shared_time, order.t_min, order.times) == (
        3,
        False,
        0.01,
        "uniform",
    )
    assert order.feature_gradient is True  # stop_gradient=False
    assert order.needs_features is False  # features=encoder: no backbone hidden states
    defaults = registry.build("order", "lomdm")
    assert (defaults.num_draws, defaults.shared_time, defaults.t_min) == (2, True, 0.0)
    assert (defaults.times, defaults.feature_gradient, defaults.needs_features) == (
        "importance",
        False,
        True,
    )


@pytest.mark.parametrize("name", ["lomdm", "positional", "genmd4"])
@pytest.mark.parametrize("declaration", ["shared_time", "t_min", "times", "num_draws"])
def test_a_training_declaration_cannot_be_assigned(name, declaration):
    order = registry.build("order", name, K=3, shared_time=False)
    before = getattr(order, declaration)
    with pytest.raises(AttributeError):
        setattr(order, declaration, 0)
    assert getattr(order, declaration) == before


@pytest.mark.parametrize(
    ("order", "backbone_block", "order_block"),
    [({"name": "block", "block_size": 2}, 4, 2), ({"name": "ar"}, 2, 1)],
)
@pytest.mark.parametrize("estimator", ["auto", "generic", "block-vectorized"])
def test_a_block_causal_backbone_cannot_contradict_the_order(
    order, backbone_block, order_block, estimator
):
    cfg = model_config(order, attention="block_causal", block_size=backbone_block)
    cfg["estimator"] = {"name": estimator}
    with pytest.raises(ConfigError) as info:
        OeMDM.from_config(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert f"block_size {backbone_block}" in message
    assert f"block size {order_block}" in message
    assert f"order '{order['name']}'" in message


def test_one_block_size_serves_the_estimator_and_the_sampler():
    model = OeMDM.from_config(
        model_config({"name": "block", "block_size": 4}, attention="block_causal", block_size=4)
    )
    assert model.estimator.name == "block-vectorized"
    assert model.order.block_structure() == model.backbone.block_size == 4
    registry.build("sampler", "block", steps=2).check_model(model)


def test_a_block_causal_backbone_stands_alone_without_a_block_order():
    model = OeMDM.from_config(model_config({"name": "mdm"}, attention="block_causal", block_size=2))
    assert model.order.block_structure() is None and model.backbone.block_size == 2
