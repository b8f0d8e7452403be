"""The exact key/value cache of causal and block-causal transformers (`TransformerKVCache`,
this backbone's implementation of the `oemdm_core.interfaces.KVCache` protocol) and the
attention mask of a cached call (`cache_mask`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class TransformerKVCache:
    """Keys and values of the first `length` positions of a batch, for every layer.

    Built by `Transformer.new_cache`; filled by `Transformer.forward(..., cache=...)`.

    keys, values: one `[B, H, capacity, Dh]` buffer per layer; only `[:, :, :length]` is valid.
    length: number of cached positions; the next call's tokens sit at positions
        `length, length + 1, …`.
    last_token: causal attention only: `[B]` ids of the token at position `length − 1`, or
        None while the cache is empty. Keys at position p read tokens < p, so this token is
        not yet part of any key and may be replaced after the call that produced the logits at
        position `length − 1` (`set_last_token`): that is how an AR sampler makes one network
        call per token.
    """

    keys: list[Tensor]
    values: list[Tensor]
    length: int = 0
    last_token: Tensor | None = None
    attention: str = "causal"
    block_size: int | None = None
    capacity: int = field(init=False)

    def __post_init__(self) -> None:
        self.capacity = self.keys[0].shape[2] if self.keys else 0

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    def set_last_token(self, tokens: Tensor) -> None:
        """Causal attention: set the token at position `length − 1` (`[B]` ids), which no
        cached key has read yet."""
        if self.attention != "causal":
            raise ValueError(
                f"set_last_token is only meaningful for causal attention, not {self.attention!r}"
            )
        if self.length == 0:
            raise ValueError("the cache is empty: there is no last position to set")
        if tokens.shape != (self.batch_size,):
            raise ValueError(
                f"last token must have shape [{self.batch_size}], got {tuple(tokens.shape)}"
            )
        self.last_token = tokens.to(torch.long)


def cache_mask(
    attention: str, block_size: int | None, start: int, count: int, device: torch.device
) -> Tensor | None:
    """Boolean `[count, start + count]` mask (True = may attend) of new positions
    `start … start+count−1` over every key up to them; None when all keys are visible."""
    query = torch.arange(start, start + count, device=device)
    key = torch.arange(start + count, device=device)
    if attention == "causal":
        return None if count == 1 else key[None, :] <= query[:, None]
    if attention == "block_causal":
        if block_size is None:
            raise ValueError("block_causal attention needs a block_size, got None")
        if (start + count - 1) // block_size == start // block_size and start % block_size == 0:
            return None  # one (partial) block starting at a boundary sees every key
        return key[None, :] // block_size <= query[:, None] // block_size
    return None


def __getattr__(name: str) -> Any:
    if name == "KVCache":  # the old name, which the interface protocol now has alone
        warnings.warn(
            "oemdm_transformer.cache.KVCache is deprecated and will be removed in 0.3; use "
            "oemdm_transformer.cache.TransformerKVCache",
            DeprecationWarning,
            stacklevel=2,
        )
        return TransformerKVCache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
