"""The `oracle` backbone (exact conditionals of the chain tasks) and what it proves about
orders: with the Bayes-optimal denoiser, the continuous NELBO of EVERY fixed order equals
−log p(x), so it does not depend on the order at all, and its gradient in a positional
order's parameters is zero; only the discrete-time bound L_T tells orders apart."""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path

import pytest
import torch
from oemdm_tasks import chain_table

from oemdm_core import ConfigError, OeMDM, registry
from oemdm_core.nelbo.exact import exact_discrete_nelbo, exact_nelbo
from oemdm_core.testing import check_backbone

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import lookup_chain_task as lc  # noqa: E402

ORDERS = [
    {"name": "mdm"},
    {"name": "ar"},
    {"name": "block", "block_size": 2},
    {"name": "positional"},
    {"name": "positional", "init": "left_to_right"},
    {"name": "positional", "init": "right_to_left"},
]


def oracle_model(order, symbols=3, length=5, task="lookup_chain", backbone=None) -> OeMDM:
    torch.manual_seed(0)
    spec = backbone or {"name": "oracle", "symbols": symbols, "task": task}
    return OeMDM.from_config(
        {
            "vocab_size": 2 * symbols,
            "length": length,
            "backbone": spec,
            "order": order,
            "schedule": {"name": "linear"},
        }
    )


def brute_force_chains(pairs: int, symbols: int) -> torch.Tensor:
    """Every lookup chain, built from the table directly (all K^P choices of r)."""
    table = chain_table(symbols)
    rows = []
    for rs in itertools.product(range(symbols), repeat=pairs):
        y, row = 0, []
        for r in rs:
            y = int(table[y, r])
            row += [r, symbols + y]
        rows.append(row)
    return torch.tensor(rows)


@pytest.mark.parametrize("task", ["lookup_chain", "reverse_lookup_chain"])
def test_the_oracle_passes_the_backbone_kit(task):
    check_backbone(registry.build("backbone", "oracle", task=task))


def test_the_oracle_refuses_a_vocabulary_that_is_not_two_alphabets():
    with pytest.raises(ConfigError, match="vocab_size must be 2·symbols = 16"):
        registry.build("backbone", "oracle", vocab_size=10)


def test_the_entropy_counts_the_fresh_symbols():
    for length in (5, 6):
        model = oracle_model("mdm", length=length)
        x = model.backbone.task.sample(4, torch.Generator().manual_seed(0))
        nll = -model.backbone.log_likelihood(x)
        torch.testing.assert_close(nll, torch.full_like(nll, model.backbone.entropy()))


def test_the_chain_is_the_benchmark_lookup_chain():
    assert (chain_table() == lc.chain_table()).all()
    oracle = registry.build("backbone", "oracle")  # L = 32, K = 8
    x = torch.as_tensor(lc.make_sequences(50))
    ll = oracle.log_likelihood(x)
    torch.testing.assert_close(ll, torch.full_like(ll, -16 * math.log(8)))
    samples = oracle.task.sample(20, torch.Generator().manual_seed(0))
    assert all(lc.is_valid(lc.to_text(row.numpy())) for row in samples)
    reverse = registry.build("backbone", "oracle", task="reverse_lookup_chain")
    torch.testing.assert_close(reverse.log_likelihood(x.flip(1)), ll)


@pytest.mark.parametrize("length", [6, 5, 3])  # shorter: a window of the chain (reversed: its end)
@pytest.mark.parametrize("task", ["lookup_chain", "reverse_lookup_chain"])
def test_conditionals_match_counting_consistent_chains(task, length):
    """p(x_i = v | revealed) against the uniform law over all chains, for random masks."""
    symbols, pairs = 3, 3
    chains = brute_force_chains(pairs, symbols)  # [K^P, 2P], each equally likely
    if task == "reverse_lookup_chain":
        chains = chains.flip(1)
    chains = chains[:, :length]  # the law of the first `length` positions (with repeats)
    model = oracle_model("mdm", symbols, 2 * pairs, task)  # shorter inputs: a window
    g = torch.Generator().manual_seed(3)
    x = chains[torch.randint(0, len(chains), (40,), generator=g)]
    masked = torch.rand(x.shape, generator=g) < 0.6
    z = torch.where(masked, model.mask_id, x)
    logp = model.backbone(z).logits.double()  # [B, L, V]
    for b in range(x.shape[0]):
        keep = ~masked[b]
        for i in range(x.shape[1]):
            visible = keep.clone()
            visible[i] = False
            consistent = chains[(chains[:, visible] == x[b, visible]).all(-1)]
            expected = torch.bincount(consistent[:, i], minlength=2 * symbols).double()
            expected = expected / expected.sum()
            torch.testing.assert_close(logp[b, i].exp(), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("task", ["lookup_chain", "reverse_lookup_chain"])
@pytest.mark.parametrize("order", ORDERS, ids=lambda o: "-".join(map(str, o.values())))
def test_with_the_oracle_every_fixed_order_has_nelbo_equal_to_the_nll(order, task):
    model = oracle_model(order, length=6, task=task)
    x = model.backbone.task.sample(8, torch.Generator().manual_seed(0))
    nll = -model.backbone.log_likelihood(x)
    exact = exact_nelbo(model, x, nodes=24).total
    torch.testing.assert_close(exact, nll, atol=1e-4, rtol=0)  # quadrature error ~1e-5


def test_the_discrete_bound_tells_orders_apart_with_the_oracle():
    """L_T ≥ L, = L for AR with T = L steps, and > L for MDM with T < L (tokens revealed in
    the same step are drawn independently)."""
    values = {}
    for order in ({"name": "mdm"}, {"name": "ar"}):
        model = oracle_model(order)
        x = model.backbone.task.sample(16, torch.Generator().manual_seed(0))
        nll = -model.backbone.log_likelihood(x)
        values[order["name"]] = {
            T: (exact_discrete_nelbo(model, x, T).total - nll).mean().item() for T in (2, 5)
        }
    assert values["ar"][5] == pytest.approx(0.0, abs=1e-9)
    assert values["mdm"][5] > 0.1 and values["mdm"][2] > values["mdm"][5]
    assert values["ar"][2] > 0.1  # two steps for five positions


def test_the_order_gradient_vanishes_at_the_oracle_but_not_at_another_denoiser():
    order = {"name": "positional", "init": "left_to_right", "init_scale": 2.0}
    gradients = {}
    for label, backbone in [
        ("oracle", None),
        ("reference", {"name": "transformer", "preset": "tiny"}),
    ]:
        model = oracle_model(order, backbone=backbone)
        x = brute_force_chains(3, 3)[:6, :5]  # length 5: the first positions of chains
        exact_nelbo(model, x, nodes=24).total.sum().backward()
        gradients[label] = model.order.theta.grad.abs().max().item()
    assert gradients["oracle"] < 1e-4
    assert gradients["reference"] > 1e-2
