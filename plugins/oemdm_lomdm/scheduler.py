"""The scheduler networks g_φ (forward, reads f(x)) and h_ψ (reverse, reads f(z_t)) of LoMDM.

Both map features `[B, L, D]` to one logit per position `[B, L]`; LoMDM turns the logits into
exponents w = c1 + c2·NormSig(logits).

- `linear`: one `nn.Linear(D, 1)`, a per-position readout of the features.
- `block`: as in the paper, a small transformer block and an MLP head on the (detached)
  features: D → `width` (a linear projection plus a learned absolute position embedding,
  so a purely positional order such as left-to-right is one weight vector away), one
  pre-norm bidirectional attention block, then LayerNorm → Linear → GELU → Linear(·, 1).
  At `width` 64 it costs a few per cent of a `small` backbone pass.

The last layer starts at std 0.02, so w starts near c1 (the schedule 1 − t^{c1}) whichever
network is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


def attention_heads(width: int) -> int:
    """Heads for a block of `width`: head size 32 where it divides, else 16, 8 or one head."""
    for size in (32, 16, 8):
        if width % size == 0 and width >= 2 * size:
            return width // size
    return 1


class SchedulerBlock(nn.Module):
    """Projection + position embedding, one pre-norm transformer block, MLP head:
    `[B, L, D]` → `[B, L, 1]`."""

    def __init__(self, features: int, width: int, max_length: int) -> None:
        super().__init__()
        self.heads = attention_heads(width)
        self.project = nn.Linear(features, width)
        self.position = nn.Embedding(max_length, width)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )
        self.head = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1)
        )
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, features: Tensor) -> Tensor:
        positions = torch.arange(features.shape[1], device=features.device)
        h = self.project(features.to(self.project.weight.dtype)) + self.position(positions)[None]
        q, k, v = rearrange(
            self.qkv(self.norm1(h)), "b l (three h d) -> three b h l d", three=3, h=self.heads
        )
        attended = F.scaled_dot_product_attention(q, k, v)  # [B, H, L, Dh], bidirectional
        h = h + self.out(rearrange(attended, "b h l d -> b l (h d)"))
        h = h + self.mlp(self.norm2(h))
        return self.head(h)  # [B, L, 1]


def scheduler_network(kind: str, features: int, width: int, max_length: int) -> nn.Module:
    """g_φ or h_ψ for `features`-dimensional inputs: `[B, L, D]` → `[B, L, 1]`."""
    if kind == "linear":
        head = nn.Linear(features, 1)
        nn.init.normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        return head
    return SchedulerBlock(features, width, max_length)
