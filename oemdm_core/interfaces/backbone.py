"""Denoiser networks: tokens (mask included) in, logits over the vocabulary (mask excluded) out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from oemdm_core.plugin.component import Component

ATTENTION_MODES = ("bidirectional", "causal", "block_causal")


@dataclass
class DenoiserOutput:
    """Output of one denoiser call.

    logits: `[B, L, V]`, unnormalised scores over the V clean tokens (never the mask).
    hidden: `[B, L, D]`, final hidden states (features for learned orders), or None if the
        backbone exposes none.
    """

    logits: Tensor
    hidden: Tensor | None = None


class Backbone(Component, nn.Module, ABC):
    """A denoiser network p_θ(· | z_t, t).

    Input ids lie in `[0, vocab_size]`; id `vocab_size` is the mask token. Attributes every
    backbone sets: `vocab_size` (V), `max_length`, `hidden_size` (D, or 0 if `hidden` is
    None), `attention` (one of `ATTENTION_MODES`) and `uses_time` (False if the output does
    not depend on t, which lets samplers reuse a call when the state did not change).

    Attention modes: `bidirectional`; `causal`, where the logits at position i depend only on
    tokens before i (next-token prediction, so one pass over the clean x scores every
    position under the AR order); `block_causal`, where position i sees all positions in its
    own and earlier blocks.
    """

    kind = "backbone"
    exposes_hidden: ClassVar[bool] = True
    vocab_size: int
    max_length: int
    hidden_size: int
    attention: str
    uses_time: bool

    def __init__(self) -> None:
        nn.Module.__init__(self)

    @abstractmethod
    def forward(self, tokens: Tensor, t: Tensor | None = None) -> DenoiserOutput:
        """tokens: `[B, L]` ids in [0, V]; t: `[B]` times in [0, 1] (ignored unless uses_time)."""
