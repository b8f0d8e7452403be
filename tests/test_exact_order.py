"""Exact likelihood of deterministic orders: the AR order gives the AR NLL, and every rule
defines a normalised distribution (Σ_x exp(−L(x)) = 1 by enumerating V^L)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import tiny_model

from oemdm_core import registry
from oemdm_core.runtime.evaluation.exact_order import evaluate_exact_order, exact_order_nll

DETERMINISTIC = ("confidence", "margin", "entropy", "velocity")


def all_sequences(vocab: int, length: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(vocab), repeat=length)))


@pytest.mark.parametrize("scorer", DETERMINISTIC)
def test_ar_order_gives_the_exact_ar_nll(scorer):
    model = tiny_model("ar", vocab_size=5, length=6, attention="causal")
    assert model.estimator.name == "teacher-forcing"  # exact: Σ_i −log p(x^i | x_<i)
    x = torch.randint(0, 5, (7, 6), generator=torch.Generator().manual_seed(0))
    result = exact_order_nll(model, x, registry.build("scorer", scorer))
    torch.testing.assert_close(result.nll, model.nelbo(x).total.double(), rtol=1e-5, atol=1e-5)
    assert (result.order == torch.arange(6)).all() and result.steps == 6


@pytest.mark.parametrize(
    "order",
    ["mdm", "lomdm", "genmd4", {"name": "block", "block_size": 2}, "ar"],
    ids=str,
)
@pytest.mark.parametrize("per_step", [1, 3])
def test_every_rule_is_a_normalised_distribution(order, per_step):
    model = tiny_model(order, vocab_size=3, length=4, time_conditioning=True)
    x = all_sequences(3, 4)  # all 81 sequences
    for scorer in DETERMINISTIC:
        result = exact_order_nll(model, x, registry.build("scorer", scorer), per_step=per_step)
        total = float(torch.logsumexp(-result.nll, 0).exp())
        assert abs(total - 1.0) < 1e-9, (scorer, total)
        assert result.steps == math.ceil(4 / per_step) or order != "mdm"


def test_the_order_follows_the_scorer_and_depends_on_the_sequence():
    model = tiny_model("mdm", vocab_size=3, length=4)
    x = all_sequences(3, 4)
    result = exact_order_nll(model, x, registry.build("scorer", "confidence"))
    assert (result.order.sort(-1).values == torch.arange(4)).all()  # a permutation per row
    first = result.order.argmin(-1)
    assert (first == first[0]).all()  # the first choice sees only masks: the same for all x
    assert len({tuple(r) for r in result.order.tolist()}) > 1  # later ones depend on x
    # one step un-masking everything: the product of the all-mask marginals
    at_once = exact_order_nll(model, x, registry.build("scorer", "margin"), per_step=4)
    logp = torch.log_softmax(model.denoise(torch.full((1, 4), 3)).logits.double(), -1)[0]
    expected = -logp.gather(-1, x.T).sum(0)
    torch.testing.assert_close(at_once.nll, expected)


@pytest.mark.parametrize("name", ["plackett-luce", "random"])
def test_random_scorers_are_refused(name):
    model = tiny_model("mdm", vocab_size=3, length=4)
    with pytest.raises(ValueError, match=f"scorer '{name}' is random.*deterministic scorer"):
        exact_order_nll(model, torch.zeros(1, 4, dtype=torch.long), registry.build("scorer", name))
    with pytest.raises(ValueError, match="per_step must be an integer >= 1, got 0"):
        exact_order_nll(
            model, torch.zeros(1, 4, dtype=torch.long), registry.build("scorer", "entropy"), 0
        )


def test_evaluation_is_deterministic_and_in_bits_per_token():
    model = tiny_model("lomdm", vocab_size=3, length=4)
    batches = list(all_sequences(3, 4).split(20))
    scorer = registry.build("scorer", "velocity")
    a = evaluate_exact_order(model, batches, scorer)
    b = evaluate_exact_order(model, batches, scorer)
    assert a == b and a.mode == "exact-order" and a.num_sequences == 81
    nll = torch.cat([exact_order_nll(model, x, scorer).nll for x in batches])
    assert math.isclose(a.bits_per_token, float(nll.mean()) / (4 * math.log(2)), rel_tol=1e-12)
