"""The conformance kits (`oemdm_core.testing`) run unchanged over every registered schedule,
order, sampler and backbone; `test_kits_catch_broken.py` shows that each check fails on a
component that breaks it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oemdm_core import ATTENTION_MODES, OeMDM, registry
from oemdm_core.testing import (
    REFERENCE_MODELS,
    ReferenceBackbone,
    check_backbone,
    check_order,
    check_sampler,
    check_schedule,
    edge_times,
    lengths,
    reference_models,
    time_pairs,
    times,
    token_batches,
    vocab_sizes,
)

SCHEDULES = registry.available("schedule")
ORDERS = registry.available("order")
SAMPLERS = registry.available("sampler")
BACKBONES = registry.available("backbone")
FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference_model(order: str, schedule: str, length: int = 4) -> OeMDM:
    """A model of the reference backbone; every order is built the same way (default
    options, fixed seed for the weights of learned orders)."""
    torch.manual_seed(0)
    backbone = ReferenceBackbone(vocab_size=3, max_length=length)
    built = registry.build("order", order)
    return OeMDM(backbone, built, registry.build("schedule", schedule), length=length)


@pytest.fixture(scope="module")
def models():
    """One tiny model per (order, schedule)."""
    return {(o, s): reference_model(o, s) for o in ORDERS for s in SCHEDULES}


# -- schedules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_passes_on_the_default_grid(name):
    check_schedule(registry.build("schedule", name))


@pytest.mark.parametrize("name", SCHEDULES)
@FAST
@given(t=st.lists(times(), min_size=1, max_size=5))
def test_every_schedule_passes_at_drawn_times(name, t):
    check_schedule(registry.build("schedule", name), times=t)


# -- orders --------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("order", ORDERS)
def test_every_order_passes_on_the_default_grid(models, order, schedule):
    model = models[(order, schedule)]
    check_order(model.order, model=model)


@pytest.mark.parametrize("order", ORDERS)
@FAST
@given(data=st.data())
def test_every_order_passes_at_drawn_times_and_tokens(models, order, data):
    model = models[(order, "cosine")]
    x = data.draw(token_batches(model.vocab_size, model.length, max_batch=3))
    t = data.draw(st.lists(times(model.length), min_size=1, max_size=4))
    check_order(model.order, model=model, x=x, times=t)


@pytest.mark.parametrize("order", ORDERS)
@FAST
@given(pair=time_pairs(4))
def test_every_order_never_nan_at_edges_in_the_nelbo(models, order, pair):
    model = models[(order, "linear")]
    x = torch.tensor([[0, 1, 2, 0], [2, 2, 1, 0]])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for t in pair:
            terms = model.nelbo(x, t=torch.full((2,), t), generator=generator)
            assert torch.isfinite(terms.total).all(), (order, t)
        terms = model.nelbo(x, steps=7, generator=generator)
        assert torch.isfinite(terms.total).all()


def test_check_order_takes_a_class_and_defaults_to_a_linear_base():
    check_order(registry.get("order", "block"))  # built with its default options


@pytest.mark.parametrize("order", [o for o in ORDERS if registry.get("order", o).learned])
def test_check_order_asks_for_a_model_for_learned_orders(order):
    with pytest.raises(ValueError, match="model="):
        check_order(registry.get("order", order))


# -- samplers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_passes_on_the_reference_models(name, fresh_registry):
    check_sampler(fresh_registry.build("sampler", name), registry=fresh_registry)


def test_reference_models_cover_every_order_and_attention():
    models = reference_models()
    assert len(models) == len(REFERENCE_MODELS)
    assert {m.order.name for _, m in models} == {c[0] for c in REFERENCE_MODELS}
    assert {m.backbone.attention for _, m in models} == set(ATTENTION_MODES)
    assert {m.backbone.uses_time for _, m in models} == {False, True}
    for label, model in models:
        block = model.order.block_structure()
        if model.backbone.attention == "block_causal" and block is not None:
            assert model.backbone.block_size == block, label


# -- backbones -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_passes_with_its_default_options(name):
    check_backbone(registry.build("backbone", name))


@pytest.mark.parametrize("exposes_hidden", [True, False])
@pytest.mark.parametrize("uses_time", [False, True])
@pytest.mark.parametrize("attention", ATTENTION_MODES)
def test_the_reference_backbone_passes_in_every_configuration(attention, uses_time, exposes_hidden):
    block_size = 3 if attention == "block_causal" else None
    for kv_cache in (True, False):
        backbone = ReferenceBackbone(
            attention=attention,
            block_size=block_size,
            uses_time=uses_time,
            exposes_hidden=exposes_hidden,
            kv_cache=kv_cache,
        )
        assert backbone.supports_kv_cache == (kv_cache and attention != "bidirectional")
        check_backbone(backbone)


def test_the_reference_backbone_is_deterministic_and_time_conditioned_when_asked():
    x = torch.tensor([[0, 3, 1, 2]])
    a, b = (ReferenceBackbone(uses_time=True) for _ in range(2))
    torch.testing.assert_close(a(x, torch.tensor([0.3])).logits, b(x, torch.tensor([0.3])).logits)
    assert not torch.allclose(a(x, torch.tensor([0.3])).logits, a(x, torch.tensor([0.9])).logits)
    with pytest.raises(ValueError, match="time-conditioned"):
        a(x)


# -- strategies ----------------------------------------------------------------------------------
def test_edge_times_include_ends_and_window_edges():
    points = edge_times(4)
    assert {0.0, 1.0, 0.25, 0.5, 0.75} <= set(points)
    assert all(0.0 <= p <= 1.0 for p in points)


@settings(max_examples=30, deadline=None)
@given(v=vocab_sizes(5), n=lengths(8, multiple_of=2), data=st.data())
def test_token_strategies_respect_their_bounds(v, n, data):
    assert n % 2 == 0 and 1 <= v <= 5
    x = data.draw(token_batches(v, n, with_mask=True))
    assert x.dtype == torch.long and x.shape[1] == n and 1 <= x.shape[0] <= 4
    assert int(x.min()) >= 0 and int(x.max()) <= v
    s, t = data.draw(time_pairs())
    assert 0.0 <= s <= t <= 1.0
