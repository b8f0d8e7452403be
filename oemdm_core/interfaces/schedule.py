"""Base noise schedules α_b(s): s ∈ [0, 1] → [0, 1], α_b(0) = 1, α_b(1) = 0, non-increasing.

Orders compose a base schedule with per-position time windows (see `position_schedule`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from oemdm_core.plugin.component import Component


class BaseSchedule(Component, ABC):
    """A base schedule α_b(s). All methods are elementwise on tensors of any shape.

    Subclasses implement `alpha` and `dalpha`; override `one_minus_alpha` where `1 - α_b`
    loses precision near s = 0 (it sets the velocity there).
    """

    kind = "schedule"

    @abstractmethod
    def alpha(self, s: Tensor) -> Tensor:
        """α_b(s), probability that a token is still clean at base time s."""

    @abstractmethod
    def dalpha(self, s: Tensor) -> Tensor:
        """dα_b/ds (≤ 0)."""

    def one_minus_alpha(self, s: Tensor) -> Tensor:
        """1 - α_b(s), the masking probability."""
        return 1.0 - self.alpha(s)

    def velocity(self, s: Tensor) -> Tensor:
        """Hazard rate -α_b'(s) / (1 - α_b(s)); 0 where 1 - α_b(s) = 0 (nothing to un-mask)."""
        denom = self.one_minus_alpha(s)
        safe = torch.where(denom > 0, denom, torch.ones_like(denom))
        return torch.where(denom > 0, -self.dalpha(s) / safe, torch.zeros_like(denom))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_options()})"
