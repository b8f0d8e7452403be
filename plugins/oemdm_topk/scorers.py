"""Inference-time order rules: rank masked positions for un-masking (higher score first).

Every scorer works with any model: those that read the denoiser's logits (confidence,
margin, entropy) need nothing else; `plackett-luce` reads the reverse velocities, which
every order supplies (uniform for `mdm`, learned for `lomdm`/`genmd4`, windowed for `block`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from oemdm_core import Scorer
from oemdm_core.interfaces import gumbel_noise


class PlackettLuce(Scorer):
    """log v_R^i + Gumbel noise (float64): the top-k are a draw of the first k places of a
    Plackett–Luce order with weights v_R (for α = 1 − t^ŵ, weights ŵ), by Gumbel-top-k."""

    name = "plackett-luce"

    def score(
        self, logits: Tensor, velocity: Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        shape = tuple(logits.shape[:2])
        noise = gumbel_noise(shape, generator, logits.device)
        if velocity is None:
            return noise
        return torch.log(velocity.to(torch.float64)) + noise


class Velocity(Scorer):
    """log v_R^i (no noise): the position the reverse schedule un-masks fastest goes first,
    the mode of the next Plackett–Luce place (for LoMDM, the largest learned ŵ^i); a
    deterministic order rule. Without velocities every position scores 0 (leftmost first)."""

    name = "velocity"
    deterministic = True

    def score(
        self, logits: Tensor, velocity: Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        if velocity is None:
            return torch.zeros(tuple(logits.shape[:2]), dtype=torch.float64, device=logits.device)
        return torch.log(velocity.to(torch.float64))


class Confidence(Scorer):
    """max_v p_θ(v | z_t)_i: the most confident positions first (MaskGIT, LLaDA low-confidence
    remasking)."""

    name = "confidence"
    deterministic = True

    def score(
        self, logits: Tensor, velocity: Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        return torch.log_softmax(logits.double(), dim=-1).max(-1).values.exp()


class Margin(Scorer):
    """p_top1 − p_top2: positions where the best token leads the runner-up most go first."""

    name = "margin"
    deterministic = True

    def score(
        self, logits: Tensor, velocity: Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        probs = torch.softmax(logits.double(), dim=-1)
        if probs.shape[-1] == 1:
            return probs[..., 0]
        top = probs.topk(2, dim=-1).values
        return top[..., 0] - top[..., 1]


class Entropy(Scorer):
    """−H(p_θ(· | z_t)_i): low-entropy positions first."""

    name = "entropy"
    deterministic = True

    def score(
        self, logits: Tensor, velocity: Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        logp = torch.log_softmax(logits.double(), dim=-1)
        return (logp.exp() * logp).sum(-1)


class Random(Scorer):
    """Uniform random order (float64 Gumbel noise; ignores the model)."""

    name = "random"

    def score(
        self, logits: Tensor, velocity: Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        return gumbel_noise(tuple(logits.shape[:2]), generator, logits.device)


SCORERS = (PlackettLuce, Velocity, Confidence, Margin, Entropy, Random)
