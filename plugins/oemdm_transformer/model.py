"""Pre-norm transformer denoiser with RoPE and torch scaled-dot-product attention.

Causal and block-causal transformers also offer an exact key/value cache for samplers
(`new_cache`, `forward(..., cache=...)`); see `oemdm_transformer.cache.TransformerKVCache`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import Field, model_validator
from torch import Tensor, nn

from oemdm_core import Backbone, DenoiserOutput, Options
from oemdm_transformer import flex
from oemdm_transformer.cache import TransformerKVCache, cache_mask

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 32, "n_layers": 2, "n_heads": 2},  # tests
    "small": {"d_model": 256, "n_layers": 4, "n_heads": 4},  # CPU benchmarks
    "base": {"d_model": 768, "n_layers": 12, "n_heads": 12},  # MDLM / BD3-LM "small" size
}


def resolved_size(options: Transformer.Options) -> tuple[int, int, int]:
    """(d_model, n_layers, n_heads): the preset's, each overridden where the option is set."""
    size = PRESETS[options.preset]
    return (
        options.d_model or size["d_model"],
        options.n_layers or size["n_layers"],
        options.n_heads or size["n_heads"],
    )


def rope_tables(length: int, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin tables `[length, head_dim/2]` of rotary position embeddings."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate `x: [B, H, L, Dh]` by the tables `cos, sin: [L, Dh/2]` (pairs are halves)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def block_causal_mask(length: int, block_size: int, device: torch.device | None = None) -> Tensor:
    """Boolean `[L, L]` mask, True where query i may attend to key j: block(j) ≤ block(i)."""
    block = torch.arange(length, device=device) // block_size
    return block[:, None] >= block[None, :]


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.dropout = dropout

    def forward(
        self,
        h: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None,
        causal: bool,
        cached: tuple[Tensor, Tensor, int] | None = None,
    ) -> Tensor:
        q, k, v = rearrange(
            self.qkv(h), "b l (three h d) -> three b h l d", three=3, h=self.n_heads
        )
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cached is not None:
            # Write the new keys/values after the cached ones and attend to all of them; the
            # cache's length decides later whether they count as cached.
            key_buf, value_buf, start = cached
            end = start + k.shape[2]
            key_buf[:, :, start:end] = k.to(key_buf.dtype)
            value_buf[:, :, start:end] = v.to(value_buf.dtype)
            k, v = key_buf[:, :, :end], value_buf[:, :, :end]  # [B, H, start + n, Dh]
        elif mask is not None and flex.use_flex(q, mask, self.dropout if self.training else 0.0):
            # Dense boolean mask on CUDA: FlexAttention skips the empty tiles (see flex.py).
            return self.out(rearrange(flex.attend(q, k, v, mask), "b h l d -> b l (h d)"))
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=causal,
            dropout_p=self.dropout if self.training else 0.0,
        )  # [B, H, L, Dh]
        return self.out(rearrange(y, "b h l d -> b l (h d)"))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * d_model, d_model),
        )
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        h: Tensor,
        cos: Tensor,
        sin: Tensor,
        mask: Tensor | None,
        causal: bool,
        cached: tuple[Tensor, Tensor, int] | None = None,
    ) -> Tensor:
        h = h + self.drop(self.attn(self.norm1(h), cos, sin, mask, causal, cached))
        return h + self.drop(self.mlp(self.norm2(h)))


def time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of times `t: [B]` in [0, 1] → `[B, dim]`."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    angles = 1000.0 * t.float()[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Transformer(Backbone):
    """Pre-norm transformer with RoPE; bidirectional, causal or block-causal attention."""

    name = "transformer"
    accepts_structured_input = True

    class Options(Options):
        preset: Literal["tiny", "small", "base"] = Field(
            default="small", description="Size preset: tiny (tests), small (CPU), base (12×768)."
        )
        vocab_size: int = Field(default=256, ge=1, description="V, clean tokens; the mask is id V.")
        max_length: int = Field(
            default=1024, ge=1, description="Longest sequence (RoPE table size)."
        )
        d_model: int | None = Field(default=None, ge=8, description="Width; overrides the preset.")
        n_layers: int | None = Field(default=None, ge=1, description="Depth; overrides the preset.")
        n_heads: int | None = Field(
            default=None, ge=1, description="Attention heads; overrides the preset."
        )
        mlp_ratio: int = Field(default=4, ge=1, description="MLP width as a multiple of d_model.")
        attention: Literal["bidirectional", "causal", "block_causal"] = Field(
            default="bidirectional",
            description="bidirectional; causal (logits at i see tokens < i); block_causal (own and earlier blocks).",
        )
        block_size: int = Field(
            default=1, ge=1, description="Block size of block_causal attention."
        )
        time_conditioning: bool = Field(
            default=False, description="Add an embedding of t to every position."
        )
        dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout rate in training.")

        @model_validator(mode="after")
        def _heads_of_even_size(self) -> Transformer.Options:
            d_model, _, n_heads = resolved_size(self)
            if d_model % n_heads or (d_model // n_heads) % 2:
                raise ValueError(f"d_model {d_model} must split into {n_heads} heads of even size")
            return self

    options: Options
    rope_cos: Tensor  # buffers of `rope_tables`, registered in __init__
    rope_sin: Tensor

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        self.d_model, self.n_layers, self.n_heads = resolved_size(o)
        # The declared sizes and capabilities (see `Backbone`).
        self.vocab_size, self.max_length = o.vocab_size, o.max_length
        self.hidden_size = self.d_model
        self.attention, self.uses_time = o.attention, o.time_conditioning
        self.block_size = o.block_size if o.attention == "block_causal" else None
        # A bidirectional transformer's earlier keys change whenever a later token changes.
        self.supports_kv_cache = o.attention in ("causal", "block_causal")

        self.embed = nn.Embedding(o.vocab_size + 1, self.d_model)  # + the mask token
        if o.attention == "causal":
            # Initialised like the embeddings: an all-zero input row makes the first
            # LayerNorm's gradient ~1/sqrt(eps) (grad norm 1.6e11 at init, preset small).
            self.bos = nn.Parameter(torch.empty(self.d_model).normal_(std=0.02))
        if o.time_conditioning:
            self.time_mlp = nn.Sequential(
                nn.Linear(self.d_model, self.d_model),
                nn.SiLU(),
                nn.Linear(self.d_model, self.d_model),
            )
        self.blocks = nn.ModuleList(
            Block(self.d_model, self.n_heads, o.mlp_ratio, o.dropout) for _ in range(self.n_layers)
        )
        self.norm = nn.LayerNorm(self.d_model)
        self.head = nn.Linear(self.d_model, o.vocab_size, bias=False)
        cos, sin = rope_tables(o.max_length, self.d_model // self.n_heads)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def shard_units(self) -> list[nn.Module]:
        return list(self.blocks)

    def new_cache(self, batch_size: int, capacity: int | None = None) -> TransformerKVCache:
        """An empty `TransformerKVCache` for `batch_size` sequences of up to `capacity` positions
        (default max_length). Raises `ValueError` for bidirectional attention."""
        if not self.supports_kv_cache:
            raise ValueError(
                f"a KV cache needs causal or block_causal attention; this transformer's "
                f"attention is {self.attention!r}"
            )
        capacity = self.max_length if capacity is None else int(capacity)
        if batch_size < 1 or not 1 <= capacity <= self.max_length:
            raise ValueError(
                f"new_cache needs batch_size >= 1 and capacity in [1, {self.max_length}], "
                f"got {batch_size} and {capacity}"
            )
        param = self.head.weight
        shape = (batch_size, self.n_heads, capacity, self.d_model // self.n_heads)
        return TransformerKVCache(
            keys=[param.new_zeros(shape) for _ in self.blocks],
            values=[param.new_zeros(shape) for _ in self.blocks],
            attention=self.attention,
            block_size=self.block_size,
        )

    def forward(
        self,
        tokens: Tensor,
        t: Tensor | None = None,
        *,
        attn_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: TransformerKVCache | None = None,
        commit: int | None = None,
    ) -> DenoiserOutput:
        """tokens `[B, L]` ids in [0, V]; t `[B]` (used only with time_conditioning).

        attn_mask: optional boolean `[L, L]` (True = may attend) replacing the mode's mask,
            e.g. the 2L block-causal layout of the vectorised block estimator; the causal
            input shift still applies in causal mode.
        position_ids: optional `[L]` RoPE positions (default 0..L−1), e.g. [0..L−1, 0..L−1]
            for an input [z_t ; x].
        cache: optional `TransformerKVCache` holding positions `0 … c−1` (c = cache.length). Then
            `tokens [B, n]` are the ids at positions `c … c+n−1` and the result holds the
            logits there, equal (to float tolerance) to those of the uncached forward on the
            whole sequence, provided the cached positions were computed from the same tokens
            (and, with time_conditioning, the same t: each key keeps the t it was made with).
        commit: with a cache, how many leading new positions to append to it (default all,
            0 = read only). Block-causal attention must leave the cache on a block boundary.
        Returns logits `[B, L, V]` and final hidden states `[B, L, D]` (`[B, n, ·]` with a
        cache)."""
        if cache is not None:
            return self._forward_cached(tokens, t, cache, commit, attn_mask, position_ids)
        length = tokens.shape[1]
        if length > self.max_length and position_ids is None:
            raise ValueError(f"sequence length {length} exceeds max_length {self.max_length}")
        h = self.embed(tokens)  # [B, L, D]
        if self.attention == "causal":
            # Shift right: position i reads tokens < i, so its logits predict token i.
            bos = self.bos.to(h.dtype).expand(h.shape[0], 1, -1)
            h = torch.cat([bos, h[:, :-1]], dim=1)
        h = self._add_time(h, t)
        mask, causal = attn_mask, self.attention == "causal" and attn_mask is None
        if mask is None and self.attention == "block_causal":
            mask = block_causal_mask(length, self.options.block_size, tokens.device)
        if position_ids is None:
            cos, sin = self.rope_cos[:length], self.rope_sin[:length]
        else:
            cos, sin = self.rope_cos[position_ids], self.rope_sin[position_ids]
        for block in self.blocks:
            h = block(h, cos, sin, mask, causal)
        hidden = self.norm(h)
        return DenoiserOutput(logits=self.head(hidden), hidden=hidden)

    def _add_time(self, h: Tensor, t: Tensor | None) -> Tensor:
        if not self.uses_time:
            return h
        if t is None:
            raise ValueError("this transformer is time-conditioned: pass t of shape [B]")
        return h + self.time_mlp(time_embedding(t, self.d_model).to(h.dtype))[:, None, :]

    def _forward_cached(
        self,
        tokens: Tensor,
        t: Tensor | None,
        cache: TransformerKVCache,
        commit: int | None,
        attn_mask: Tensor | None,
        position_ids: Tensor | None,
    ) -> DenoiserOutput:
        if attn_mask is not None or position_ids is not None:
            raise ValueError("attn_mask and position_ids cannot be combined with a KV cache")
        if cache.attention != self.attention or cache.block_size != self.block_size:
            raise ValueError(
                f"cache made for {cache.attention!r} attention (block size {cache.block_size}), "
                f"but this transformer uses {self.attention!r} (block size {self.block_size})"
            )
        batch, count = tokens.shape
        start = cache.length
        commit = count if commit is None else int(commit)
        if batch != cache.batch_size:
            raise ValueError(f"tokens have batch {batch}, the cache {cache.batch_size}")
        if count < 1 or start + count > cache.capacity:
            raise ValueError(
                f"cannot add {count} positions to a cache holding {start} of {cache.capacity}"
            )
        if not 0 <= commit <= count:
            raise ValueError(f"commit must lie in [0, {count}], got {commit}")
        if (
            self.attention == "block_causal"
            and (start + commit) % self.options.block_size
            and commit
        ):
            raise ValueError(
                f"block_causal cache must end on a block boundary (block size "
                f"{self.block_size}); committing {commit} positions after {start} would not"
            )
        h = self.embed(tokens)  # [B, n, D]
        if self.attention == "causal":
            # Position p reads token p − 1: the cache's last token, then tokens[:, :-1].
            first = (
                self.bos.to(h.dtype).expand(batch, 1, -1)
                if cache.last_token is None
                else self.embed(cache.last_token)[:, None, :]
            )
            h = torch.cat([first, h[:, :-1]], dim=1)
        h = self._add_time(h, t)
        mask = cache_mask(self.attention, self.block_size, start, count, tokens.device)
        cos, sin = self.rope_cos[start : start + count], self.rope_sin[start : start + count]
        for block, keys, values in zip(self.blocks, cache.keys, cache.values, strict=True):
            h = block(h, cos, sin, mask, False, (keys, values, start))
        cache.length = start + commit
        if self.attention == "causal" and commit:
            cache.last_token = tokens[:, commit - 1].clone()
        hidden = self.norm(h)
        return DenoiserOutput(logits=self.head(hidden), hidden=hidden)
