"""NELBO estimators: compute `NELBOTerms` for a model and a clean batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from oemdm_core.plugin.component import Component

if TYPE_CHECKING:
    from oemdm_core.model.oemdm import OeMDM
    from oemdm_core.nelbo.terms import NELBOTerms


class Estimator(Component, ABC):
    """Computes `NELBOTerms` for a model and a clean batch.

    `auto_priority`: with `estimator: auto`, the supporting estimator with the highest
    priority is chosen (the generic one has 0).
    """

    kind = "estimator"
    auto_priority: ClassVar[int] = 0

    def unsupported_reason(self, model: OeMDM) -> str | None:
        """None if this estimator can serve `model`, else why not (naming the components)."""
        return None

    @abstractmethod
    def nelbo(
        self,
        model: OeMDM,
        x: Tensor,
        t: Tensor | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> NELBOTerms:
        """Unbiased single-draw estimate of L(x) (or of L_T(x) when `steps` is given)."""
