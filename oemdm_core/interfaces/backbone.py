"""Denoiser networks: tokens (mask included) in, logits over the vocabulary (mask excluded)
out, and the capabilities a backbone declares so that estimators and samplers can take fast
paths without knowing its class."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

from torch import Tensor, nn

from oemdm_core.plugin.component import Component

AttentionMode = Literal["bidirectional", "causal", "block_causal"]
ATTENTION_MODES: tuple[str, ...] = get_args(AttentionMode)


@dataclass
class DenoiserOutput:
    """Output of one denoiser call.

    logits: `[B, L, V]`, unnormalised scores over the V clean tokens (never the mask).
    hidden: `[B, L, D]`, final hidden states (features for learned orders), or None if the
        backbone exposes none.
    """

    logits: Tensor
    hidden: Tensor | None = None


class KVCache(Protocol):
    """Keys and values of the first `length` positions of a batch (`Backbone.new_cache`).

    length: cached positions; the next cached call's tokens sit at `length, length + 1, …`.
    """

    length: int

    def set_last_token(self, tokens: Tensor) -> None:
        """Causal attention: replace the token `[B]` at position `length − 1`, which no cached
        key has read yet (an AR sampler then makes one call per token)."""


class Backbone(Component, nn.Module, ABC):
    """A denoiser network p_θ(· | z_t, t).

    Input ids lie in `[0, vocab_size]`; id `vocab_size` is the mask token.

    Sizes, set by every backbone: `vocab_size` (V), `max_length`, `hidden_size` (D, or 0 if
    `hidden` is None). Its `Options` must declare the fields `vocab_size` and `max_length`:
    `OeMDM.from_config` passes them in, from the config's `vocab_size` and `length`.

    Capabilities, declared (class or instance attributes; the defaults below are the
    conservative ones, so a backbone that declares nothing gets the generic paths):

    - `attention`: one of `ATTENTION_MODES`. `bidirectional`; `causal`: the logits at i
      depend only on tokens before i (next-token prediction, so one pass over the clean x
      scores every position under the AR order); `block_causal`: position i sees all
      positions in its own and earlier blocks of `block_size`.
    - `block_size`: the block size of `block_causal` attention, else None.
    - `uses_time`: False if the output does not depend on t (samplers then reuse a call when
      the state did not change; structured estimators need False).
    - `exposes_hidden`: `hidden` is returned (learned orders read it as features).
    - `supports_kv_cache`: `new_cache` works and `forward(tokens, t, cache=c, commit=k)`
      reads positions `0 … c.length−1` from the cache, returns the logits of `tokens` (at
      positions `c.length …`) equal to the uncached ones, and appends the first `k` of them
      (default all, 0 = read only; block-causal: stay on a block boundary).
    - `accepts_structured_input`: `forward(tokens, t, attn_mask=M, position_ids=P)` takes a
      boolean `[n, n]` mask (True = may attend) replacing the mode's own and `[n]` positions
      (the 2L two-stream input [z_t ; x] of the vectorised block estimator).
    """

    kind = "backbone"
    vocab_size: int
    max_length: int
    hidden_size: int
    attention: str = "bidirectional"
    block_size: int | None = None
    uses_time: bool = True
    exposes_hidden: bool = True
    supports_kv_cache: bool = False
    accepts_structured_input: bool = False

    def __init__(self, **options: Any) -> None:
        nn.Module.__init__(self)  # first: Component.__init__ sets an attribute
        Component.__init__(self, **options)

    @abstractmethod
    def forward(self, tokens: Tensor, t: Tensor | None = None) -> DenoiserOutput:
        """tokens: `[B, L]` ids in [0, V]; t: `[B]` times in [0, 1] (ignored unless uses_time)."""

    def shard_units(self) -> list[nn.Module]:
        """The submodules sharded one at a time under FSDP (see the class docstring)."""
        return []

    def new_cache(self, batch_size: int, capacity: int | None = None) -> KVCache:
        """An empty cache for `batch_size` sequences of up to `capacity` positions (default
        max_length); only when `supports_kv_cache`."""
        raise ValueError(f"backbone '{self.name}' declares no KV cache (supports_kv_cache False)")
