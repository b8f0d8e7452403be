"""NELBO estimators: compute `NELBOTerms` for a model and a clean batch."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from oemdm_core.interfaces.model import DiffusionModel
from oemdm_core.plugin.component import Component


@dataclass
class NELBOTerms:
    """A single-draw NELBO estimate, per sequence.

    total, reconstruction, velocity_matching: `[B]` nats per sequence, with
        total = reconstruction + velocity_matching. For learned forward schedules,
        `total` also carries the score-function surrogate: its value is unchanged, but
        `total.mean().backward()` gives an unbiased gradient of the NELBO for every
        parameter (see `oemdm_core.nelbo.terms.score_function_surrogate`).
    t: `[B]` the times used (for K draws per sequence, those of the first draw).
    num_masked: `[B]` masked positions in the draw (averaged over draws).
    """

    total: Tensor
    reconstruction: Tensor
    velocity_matching: Tensor
    t: Tensor
    num_masked: Tensor

    def bits_per_token(self, length: int) -> Tensor:
        """Mean over the batch of total / (length · ln 2), a 0-d tensor."""
        return self.total.detach().mean() / (length * math.log(2.0))


class Estimator(Component, ABC):
    """Computes `NELBOTerms` for a model and a clean batch.

    `auto_priority`: with `estimator: auto`, the supporting estimator with the highest
    priority is chosen (the generic one has 0).
    """

    kind = "estimator"
    auto_priority: ClassVar[int] = 0

    def unsupported_reason(self, model: DiffusionModel) -> str | None:
        """None if this estimator can serve `model`, else why not (naming the components)."""
        return None

    @abstractmethod
    def nelbo(
        self,
        model: DiffusionModel,
        x: Tensor,
        t: Tensor | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> NELBOTerms:
        """Unbiased single-draw estimate of L(x) (or of L_T(x) when `steps` is given)."""
