"""Samplers (generate sequences from a model) and scorers (inference-time order rules)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from oemdm_core.interfaces.model import DiffusionModel
from oemdm_core.plugin.component import Component


@dataclass
class SampleResult:
    """Generated sequences.

    tokens: `[N, L]` ids in [0, V).
    order: `[N, L]` long, the step (0-based, in generation order) at which each position was
        un-masked; positions fixed by the caller (prefix / infilling) get −1.
    nfe: number of denoiser calls made.
    lengths: `[N]` long, the length of each sequence when a sampler stops sequences early
        (at an end-of-text token; positions after it are padding with order −1), else None:
        every sequence has length L.
    """

    tokens: Tensor
    order: Tensor
    nfe: int
    lengths: Tensor | None = None


class Sampler(Component, ABC):
    """Generates sequences from a model (a `DiffusionModel`, e.g. an `OeMDM`).

    `has_cache`: the sampler has a boolean option `cache` (reuse of denoiser calls or a KV
    cache) that changes only the cost, never the result, for backbones that ignore t: with
    the same generator, samples with `cache=True` equal those with `cache=False`. (With a
    time-conditioned backbone a KV cache keeps the t each position was committed at.)
    Declare it; the default is False.

    `reports_steps`: `sample` takes a keyword `callback`, called after every step with a
    `StepInfo` (`oemdm_core.interfaces.segment`: step index, times, state `[N, L]`, revealed
    positions `[N, L]`); the callback changes nothing in the result. True for every
    `SegmentSampler`; declare it elsewhere; the default is False.
    """

    kind = "sampler"
    has_cache: ClassVar[bool] = False
    reports_steps: ClassVar[bool] = False

    @abstractmethod
    def sample(
        self,
        model: DiffusionModel,
        num_samples: int,
        length: int | None = None,
        generator: torch.Generator | None = None,
        fixed: Tensor | None = None,
    ) -> SampleResult:
        """Draw `num_samples` sequences of `length` (default: model.length).

        fixed: optional `[N, L]` (or `[L]`) ids; entries ≥ 0 are kept as given (a prompt
        prefix or the context of an infilling task), entries < 0 are generated.
        """

    def check_model(self, model: DiffusionModel, length: int | None = None) -> None:
        """Raise `ValueError` if this sampler cannot serve `model` at `length` (default
        model.length). Called before training, so that a sampler that does not fit the
        order fails at once rather than after the last step. Default: no requirement."""


class Scorer(Component, ABC):
    """Ranks masked positions for un-masking (higher first). Works with any trained model.

    `deterministic`: True if the scores are a function of (logits, velocity) alone (no
    noise), so the order it induces is a function of the state; exact-order likelihoods
    (`oemdm_core.runtime.evaluation.exact_order`) need such a scorer. Declare it; the default is False.
    """

    kind = "scorer"
    deterministic: ClassVar[bool] = False

    @abstractmethod
    def score(
        self,
        logits: Tensor,
        velocity: Tensor | None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """logits: `[N, L, V]` denoiser output; velocity: `[N, L]` reverse velocities (or None).
        Returns `[N, L]` scores; the sampler un-masks the top-k masked positions."""


def initial_state(
    model: DiffusionModel, num_samples: int, length: int, fixed: Tensor | None
) -> tuple[Tensor, Tensor]:
    """All-mask start state `[N, L]` with `fixed` entries filled in, and the fixed indicator."""
    device = model.device
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if length < 1 or length > model.backbone.max_length:
        raise ValueError(f"length must lie in [1, {model.backbone.max_length}], got {length}")
    model.order.check_length(length)
    z = torch.full((num_samples, length), model.mask_id, dtype=torch.long, device=device)
    if fixed is None:
        return z, torch.zeros_like(z, dtype=torch.bool)
    fixed = fixed.to(device=device, dtype=torch.long)
    if fixed.dim() == 1:
        fixed = fixed.expand(num_samples, -1)
    if fixed.shape[1] > length:
        raise ValueError(
            f"fixed tokens/prefix of length {fixed.shape[1]} are longer than the sample length {length}"
        )
    if fixed.shape[0] != num_samples:
        raise ValueError(
            f"fixed must have shape [{num_samples}, L] or [L], got {tuple(fixed.shape)}"
        )
    if fixed.numel() and int(fixed.max()) >= model.vocab_size:
        raise ValueError(
            f"fixed token ids must lie in [0, {model.vocab_size}) (negative = generate), got max {int(fixed.max())}"
        )
    pad = torch.full((num_samples, length - fixed.shape[1]), -1, dtype=torch.long, device=device)
    fixed = torch.cat([fixed, pad], dim=1)
    keep = fixed >= 0
    return torch.where(keep, fixed, z), keep
