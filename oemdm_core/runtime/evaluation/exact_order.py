"""Exact likelihood of a deterministic generation order (DUEL, arXiv 2603.01367).

A sampler that un-masks, at every step, the k masked positions a deterministic rule ranks
highest (greedy top-k by confidence, margin, entropy or the reverse velocities) and draws
their tokens from p_θ defines a distribution over sequences whose likelihood is exact:
the positions chosen at step j depend only on the state z_j, so along the path of x itself

    log p(x) = Σ_j Σ_{i ∈ S_j(z_j)} log p_θ(x^i | z_j),   z_{j+1} = z_j with x on S_j,

starting from the all-mask state. There is no bound and no randomness, and Σ_x p(x) = 1
exactly (each step is a product of the denoiser's marginals over a set fixed by the past).

Which positions may be chosen and at what time the denoiser is asked follow the model's
reverse schedule, as in the `topk` sampler: the candidates are the masked positions with a
positive reverse velocity at t_j = (m_j − k_j/2) / L (m_j masked positions, k_j = min(k, m_j)
chosen), the middle of the step on the uniform grid; for `ar` and `block` that is the next
position or block only, so the `ar` order with k = 1 gives exactly the AR likelihood.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from oemdm_core.interfaces.sampler import Scorer
from oemdm_core.model.oemdm import OeMDM
from oemdm_core.runtime.evaluation.likelihood import EvalResult


@dataclass
class ExactOrderNLL:
    """−log p(x) under a deterministic order.

    nll: `[B]` float64 nats per sequence.
    order: `[B, L]` long, the step at which each position was un-masked along x.
    steps: number of denoiser calls (steps) made for the batch.
    """

    nll: Tensor
    order: Tensor
    steps: int


def check_scorer(scorer: Scorer) -> None:
    """Raise `ValueError` unless `scorer` declares itself deterministic."""
    if not isinstance(scorer, Scorer):
        raise TypeError(f"scorer must be a Scorer, got {type(scorer).__name__}")
    if not type(scorer).deterministic:
        raise ValueError(
            f"scorer '{scorer.name}' is random (its order is not a function of the state); "
            "the exact-order likelihood needs a deterministic scorer, e.g. confidence, margin, "
            "entropy or velocity"
        )


def _top_k(scores: Tensor, eligible: Tensor, counts: Tensor) -> Tensor:
    """`[B, L]` bool: the `counts[b]` eligible positions with the highest scores (ties: the
    leftmost first)."""
    lowest = torch.finfo(torch.float64).min
    scores = torch.where(eligible, scores.double().nan_to_num(neginf=lowest), -torch.inf)
    ranked = scores.argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(ranked).scatter_(
        -1, ranked, torch.arange(scores.shape[-1], device=scores.device).expand_as(ranked)
    )
    return eligible & (rank < counts[:, None])


@torch.no_grad()
def exact_order_nll(model: OeMDM, x: Tensor, scorer: Scorer, per_step: int = 1) -> ExactOrderNLL:
    """−log p(x) of `x: [B, L]` when `per_step` positions per step are chosen greedily by
    `scorer` (see module); nats per sequence, one denoiser call per step."""
    check_scorer(scorer)
    if isinstance(per_step, bool) or int(per_step) != per_step or per_step < 1:
        raise ValueError(f"per_step must be an integer >= 1, got {per_step!r}")
    model.check_tokens(x)
    batch, length = x.shape
    z = torch.full_like(x, model.mask_id)
    nll = torch.zeros(batch, dtype=torch.float64, device=x.device)
    order = torch.full_like(x, -1)
    step = 0
    while True:
        masked = z == model.mask_id
        remaining = masked.sum(-1)  # [B]
        if not bool(remaining.any()):
            break
        chosen = remaining.clamp(max=per_step)
        t = ((remaining - chosen / 2) / length).clamp(0.0, 1.0).float()
        out = model.denoise(z, t)
        velocity = model.reverse_schedule(z, t, out).velocity(t)
        eligible = masked & (velocity > 0)
        eligible = torch.where(eligible.any(-1, keepdim=True), eligible, masked)
        counts = torch.minimum(chosen, eligible.sum(-1))
        reveal = _top_k(scorer.score(out.logits, velocity, None), eligible, counts)
        logp = torch.log_softmax(out.logits.double(), dim=-1)
        ce = -logp.gather(-1, x[..., None])[..., 0]  # [B, L] nats
        nll += torch.where(reveal, ce, 0.0).sum(-1)
        z = torch.where(reveal, x, z)
        order = torch.where(reveal, step, order)
        step += 1
    return ExactOrderNLL(nll=nll, order=order, steps=step)


@torch.no_grad()
def evaluate_exact_order(
    model: OeMDM, batches: Iterable[Tensor], scorer: Scorer, per_step: int = 1
) -> EvalResult:
    """Exact-order NLL of every sequence in `batches` (each `[B, L]`, same L), reported like
    the NELBO (`EvalResult`, mode 'exact-order'): bits per token, perplexity, standard error
    across sequences (data only: the value itself has no randomness)."""
    check_scorer(scorer)
    was_training = model.training
    model.eval()
    values, length = [], None
    try:
        for x in batches:
            x = x.to(model.device)
            if length is not None and x.shape[1] != length:
                raise ValueError(
                    f"all batches must have the same length; got {x.shape[1]} after {length}"
                )
            length = x.shape[1]
            values.append(exact_order_nll(model, x, scorer, per_step).nll.cpu())
    finally:
        model.train(was_training)
    if not values:
        raise ValueError("no data to evaluate: the batches iterable was empty")
    return EvalResult.from_sequences(torch.cat(values), length, "exact-order")
