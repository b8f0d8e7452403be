"""What estimators and samplers need of the model: `DiffusionModel`, a protocol that `OeMDM`
(`oemdm_core.model`) satisfies.

The interfaces name this protocol, not `OeMDM`, so that the contract does not depend on
the class composed from it (the model layer imports the interfaces, never the reverse).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from oemdm_core.interfaces.backbone import Backbone, DenoiserOutput
from oemdm_core.interfaces.order import Order
from oemdm_core.interfaces.position_schedule import PositionSchedule
from oemdm_core.interfaces.schedule import BaseSchedule


class DiffusionModel(Protocol):
    """A denoiser, an order and a base schedule composed: the model an `Estimator` estimates
    the NELBO of and a `Sampler` draws from. Tokens `[B, L]` ids in [0, V], id V the mask."""

    @property
    def backbone(self) -> Backbone:
        """The denoiser p_θ(x^i | z_t, t)."""

    @property
    def order(self) -> Order:
        """The generation order (forward and reverse per-position schedules)."""

    @property
    def schedule(self) -> BaseSchedule:
        """The base schedule α_b the order is built on."""

    @property
    def length(self) -> int:
        """L, the sequence length the model is meant for."""

    @property
    def vocab_size(self) -> int:
        """V, the number of clean tokens."""

    @property
    def mask_id(self) -> int:
        """Id of the mask token (= V)."""

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""

    def check_tokens(self, tokens: Tensor, allow_mask: bool = False) -> None:
        """Raise `ValueError` unless `tokens` is a `[B, L]` integer tensor of valid ids."""

    def check_times(self, t: Tensor, batch: int) -> Tensor:
        """Validate times `[B]` in [0, 1]; returns them as a floating tensor."""

    def denoise(self, z_t: Tensor, t: Tensor | None = None) -> DenoiserOutput:
        """p_θ(· | z_t, t): `out.logits [B, L, V]`, `out.hidden [B, L, D]`."""

    def clean_features(self, x: Tensor) -> Tensor:
        """Backbone hidden states of the clean sequence `x: [B, L]`, `[B, L, D]`."""

    def forward_schedule(self, x: Tensor) -> PositionSchedule:
        """Forward schedule α_F(x, ·) of the clean batch `x: [B, L]`."""

    def reverse_schedule(
        self, z_t: Tensor, t: Tensor, out: DenoiserOutput | None = None
    ) -> PositionSchedule:
        """Reverse schedule α_R(z_t, ·) at state `z_t: [B, L]`, time `t: [B]`; `out` is the
        denoiser output at (z_t, t), computed if needed and not given."""
