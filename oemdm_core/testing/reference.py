"""A tiny deterministic reference backbone and the linear base schedule: what the kits
build models from, so that checking an order or a sampler needs no backbone plugin.

`ReferenceBackbone` embeds tokens and positions, mixes them with one masked averaging
layer that honours each attention mode, and reads logits off the result. It is exact by
construction (its KV cache keeps the tokens and recomputes), so a sampler that fails a kit
on it is wrong, whatever the numerics of a real network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from oemdm_core.interfaces.backbone import AttentionMode, Backbone, DenoiserOutput
from oemdm_core.interfaces.schedule import BaseSchedule
from oemdm_core.model.oemdm import OeMDM
from oemdm_core.plugin.component import Options
from oemdm_core.plugin.registry import Registry, resolve_registry

# (order, attention, uses_time) of the models `check_sampler` tries: each order with its
# natural attention, time-free and time-conditioned, and the block order also with the
# attentions a block sampler serves differently (orders built with default options).
REFERENCE_MODELS: tuple[tuple[str, str, bool], ...] = (
    ("mdm", "bidirectional", False),
    ("mdm", "bidirectional", True),
    ("ar", "causal", False),
    ("ar", "causal", True),
    ("block", "block_causal", False),
    ("block", "block_causal", True),
    ("block", "causal", False),
    ("block", "bidirectional", False),
)


class ReferenceLinear(BaseSchedule):
    """α_b(s) = 1 − s."""

    name = "reference-linear"

    def alpha(self, s: Tensor) -> Tensor:
        return 1.0 - s

    def one_minus_alpha(self, s: Tensor) -> Tensor:
        return s.clone()

    def dalpha(self, s: Tensor) -> Tensor:
        return torch.full_like(s, -1.0)


@dataclass
class TokenCache:
    """The reference backbone's KV cache: the tokens `[B, length]` of the cached positions
    (a cached call recomputes from them, so it equals the uncached call exactly)."""

    tokens: Tensor
    capacity: int

    @property
    def length(self) -> int:
        return self.tokens.shape[1]

    def set_last_token(self, tokens: Tensor) -> None:
        self.tokens[:, -1] = tokens


class ReferenceBackbone(Backbone):
    """h_i = embed(token) + embed(position) (+ t·w); logits = tanh(h + mean of the visible
    h_j · M) · W. Causal attention shifts the input right (position i reads tokens < i)."""

    name = "reference"
    accepts_structured_input = True

    class Options(Options):
        vocab_size: int = Field(default=3, ge=1, description="V, clean tokens; the mask is id V.")
        max_length: int = Field(default=16, ge=1, description="Longest sequence.")
        attention: AttentionMode = Field(
            default="bidirectional", description="Attention mode, one of ATTENTION_MODES."
        )
        block_size: int | None = Field(
            default=None, ge=1, description="Block size of block_causal attention."
        )
        uses_time: bool = Field(default=False, description="Add t times a learned vector.")
        exposes_hidden: bool = Field(default=True, description="Return the hidden states.")
        kv_cache: bool = Field(
            default=True, description="Offer a KV cache (causal and block_causal attention)."
        )
        width: int = Field(default=8, ge=1, description="Hidden width D.")
        seed: int = Field(default=0, description="Seed of the weights.")

        @model_validator(mode="after")
        def _block_size_with_block_causal(self):
            if (self.attention == "block_causal") != (self.block_size is not None):
                raise ValueError(
                    f"block_size must be set exactly for block_causal attention, got "
                    f"{self.block_size!r} with {self.attention!r}"
                )
            return self

    options: Options

    def __init__(self, **options) -> None:
        super().__init__(**options)
        o = self.options
        self.vocab_size, self.max_length = o.vocab_size, o.max_length
        self.attention, self.block_size = o.attention, o.block_size
        self.uses_time, self.exposes_hidden = o.uses_time, o.exposes_hidden
        self.hidden_size = o.width if o.exposes_hidden else 0
        self.supports_kv_cache = o.kv_cache and o.attention != "bidirectional"
        gen = torch.Generator().manual_seed(o.seed)
        d = o.width
        self.embed = nn.Parameter(torch.randn(o.vocab_size + 1, d, generator=gen))
        self.position = nn.Parameter(0.5 * torch.randn(o.max_length, d, generator=gen))
        self.start = nn.Parameter(torch.randn(d, generator=gen))  # what causal position 0 reads
        self.time = nn.Parameter(torch.randn(d, generator=gen))
        self.mix = nn.Parameter(torch.randn(d, d, generator=gen) / d**0.5)
        self.head = nn.Parameter(torch.randn(d, o.vocab_size, generator=gen))

    def own_mask(self, n: int) -> Tensor:
        """The mode's `[n, n]` mask, True where query i may attend to key j."""
        i = torch.arange(n, device=self.embed.device)
        if self.attention == "causal":  # over the shifted input: key j holds token j − 1
            return i[None, :] <= i[:, None]
        if self.attention == "block_causal":
            block = i // self.block_size
            return block[None, :] <= block[:, None]
        return torch.ones(n, n, dtype=torch.bool, device=i.device)

    def forward(
        self, tokens, t=None, *, attn_mask=None, position_ids=None, cache=None, commit=None
    ):
        if cache is not None:
            return self._cached(tokens, t, cache, commit)
        batch, n = tokens.shape
        if position_ids is None and n > self.max_length:
            raise ValueError(f"sequence length {n} exceeds max_length {self.max_length}")
        positions = torch.arange(n, device=tokens.device) if position_ids is None else position_ids
        h = self.embed[tokens]  # [B, n, D]
        if self.attention == "causal":
            h = torch.cat([self.start.expand(batch, 1, -1), h[:, :-1]], dim=1)
        h = h + self.position[positions]
        if self.uses_time:
            if t is None:
                raise ValueError("the reference backbone is time-conditioned: pass t of shape [B]")
            h = h + t.to(h.dtype)[:, None, None] * self.time
        mask = (self.own_mask(n) if attn_mask is None else attn_mask).to(h.dtype)  # [n, n]
        mean = (mask / mask.sum(-1, keepdim=True).clamp_min(1.0)) @ h  # [B, n, D]
        hidden = torch.tanh(h + mean @ self.mix)
        return DenoiserOutput(
            logits=hidden @ self.head, hidden=hidden if self.exposes_hidden else None
        )

    def new_cache(self, batch_size: int, capacity: int | None = None) -> TokenCache:
        if not self.supports_kv_cache:
            return super().new_cache(batch_size, capacity)
        empty = torch.zeros(batch_size, 0, dtype=torch.long, device=self.embed.device)
        return TokenCache(empty, self.max_length if capacity is None else capacity)

    def _cached(self, tokens: Tensor, t, cache: TokenCache, commit: int | None) -> DenoiserOutput:
        n, start = tokens.shape[1], cache.length
        commit = n if commit is None else commit
        if start + n > cache.capacity or not 0 <= commit <= n:
            raise ValueError(
                f"cannot add {n} positions (commit {commit}) to {start} of {cache.capacity}"
            )
        if self.attention == "block_causal" and commit and (start + commit) % self.block_size:
            raise ValueError(f"a block_causal cache must end on a multiple of {self.block_size}")
        whole = torch.cat([cache.tokens, tokens], dim=1)
        out = self(whole, t)
        cache.tokens = whole[:, : start + commit].clone()
        hidden = None if out.hidden is None else out.hidden[:, start:]
        return DenoiserOutput(logits=out.logits[:, start:], hidden=hidden)


def reference_models(
    registry: Registry | None = None,
    configs: Sequence[tuple[str | Mapping, str, bool]] | None = None,
    length: int = 8,
    vocab_size: int = 3,
) -> list[tuple[str, OeMDM]]:
    """(label, model) per configuration: an `OeMDM` of the reference backbone over the
    linear base schedule.

    configs: (order, attention, uses_time) triples, the order a registry spec (a name, or
    a mapping with `name` and options) built from `registry` (default: the global one);
    default `REFERENCE_MODELS`, skipping orders that are not registered. A block-causal
    backbone takes the order's block size (2 for orders without one).
    """
    registry = resolve_registry(registry)
    if configs is None:
        available = registry.available("order")
        configs = [c for c in REFERENCE_MODELS if c[0] in available]
    models = []
    for spec, attention, uses_time in configs:
        options = {"name": spec} if isinstance(spec, str) else dict(spec)
        name = options.pop("name")
        with torch.random.fork_rng(devices=[]):  # learned orders draw their weights
            torch.manual_seed(0)
            order = registry.build("order", name, **options)
        block = (order.block_structure() or 2) if attention == "block_causal" else None
        backbone = ReferenceBackbone(
            vocab_size=vocab_size,
            max_length=length,
            attention=attention,
            block_size=block,
            uses_time=uses_time,
        )
        label = f"order '{name}', {attention}" + (", time-conditioned" if uses_time else "")
        models.append((label, OeMDM(backbone, order, ReferenceLinear(), length=length)))
    return models


__all__ = ("REFERENCE_MODELS", "ReferenceBackbone", "ReferenceLinear", "reference_models")
