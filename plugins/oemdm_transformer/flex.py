"""Optional FlexAttention path for structured attention masks on CUDA.

The transformer takes a dense boolean mask `[Lq, Lk]` (True = may attend) for block-causal
attention and for the 2L layout [z_t ; x] of the vectorised block estimator. SDPA with a
dense mask cannot skip the masked tiles (≈ 6× the cost of causal attention at L for the 2L
layout); FlexAttention turns the mask into a `BlockMask` once and skips empty tiles.

Mode (`set_mode` or the environment variable `OEMDM_FLEX_ATTENTION`):
- `auto` (default): FlexAttention for masked attention on CUDA, dense SDPA elsewhere;
- `on`: the same, but warns when FlexAttention cannot be used (CPU tensors, or a torch
  without FlexAttention) — documented fallback: the dense SDPA mask, same result;
- `off`: always dense SDPA.
Dropout in training also falls back to SDPA (FlexAttention has no dropout).

The CUDA path cannot be exercised on a CPU-only machine; the mask conversion itself is tested
on CPU by running FlexAttention eagerly (`attend(..., compiled=False)`).
"""

from __future__ import annotations

import os
import warnings
import weakref
from typing import Any

import torch
from torch import Tensor

MODES = ("auto", "on", "off")
_mode = os.environ.get("OEMDM_FLEX_ATTENTION", "auto").strip().lower()
if _mode not in MODES:
    warnings.warn(
        f"OEMDM_FLEX_ATTENTION={_mode!r} is not a valid mode ({', '.join(MODES)}); using 'auto'",
        stacklevel=1,
    )
    _mode = "auto"
_block_masks: dict[int, tuple[weakref.ref, int, object]] = {}
_compiled_flex = None
try:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
except ImportError:  # torch without FlexAttention: the dense SDPA path only
    create_block_mask = flex_attention = None  # type: ignore[assignment]


def set_mode(mode: str) -> str:
    """Set the FlexAttention mode (auto | on | off); returns the previous one."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"flex attention mode must be one of {', '.join(MODES)}, got {mode!r}")
    previous, _mode = _mode, mode
    return previous


def get_mode() -> str:
    """The current FlexAttention mode."""
    return _mode


def flex_available() -> bool:
    """True if this torch build ships FlexAttention."""
    return flex_attention is not None


def use_flex(q: Tensor, mask: Tensor | None, dropout_p: float = 0.0) -> bool:
    """Whether attention over `q: [B, H, L, Dh]` with `mask` should take the FlexAttention path.

    Only masked attention (a boolean `mask`) without dropout qualifies; see the module
    docstring for the modes. With mode `on`, a fallback to SDPA warns (once per call site).
    """
    if mask is None or _mode == "off" or dropout_p > 0.0 or mask.dtype != torch.bool:
        return False
    if q.is_cuda and flex_available():
        return True
    if _mode == "on":
        reason = "tensors are on the CPU" if not q.is_cuda else "this torch has no FlexAttention"
        warnings.warn(
            f"FlexAttention requested (mode 'on') but {reason}: using SDPA with the dense "
            "boolean mask instead (same result, slower on long sequences)",
            stacklevel=2,
        )
    return False


def convert(mask: Tensor) -> Any:
    """A FlexAttention `BlockMask` equivalent to the boolean `mask: [Lq, Lk]` (True = attend)."""

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return mask[q_idx, kv_idx]

    q_len, kv_len = mask.shape
    return create_block_mask(mask_mod, None, None, q_len, kv_len, device=mask.device)


@torch.compiler.disable
def block_mask_from_dense(mask: Tensor) -> Any:
    """`convert(mask)`, cached per mask tensor (identity and version), so a mask reused
    across calls, like the vectorised block estimator's cached 2L mask, is converted once."""
    key = id(mask)
    hit = _block_masks.get(key)
    if hit is not None and hit[0]() is mask and hit[1] == mask._version:
        return hit[2]
    block_mask = convert(mask)
    if len(_block_masks) >= 8:
        _block_masks.clear()
    _block_masks[key] = (weakref.ref(mask), mask._version, block_mask)
    return block_mask


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, compiled: bool | None = None) -> Tensor:
    """FlexAttention of `q, k, v: [B, H, L, Dh]` under the boolean `mask: [Lq, Lk]`.

    Returns `[B, H, Lq, Dh]`, equal to SDPA with `attn_mask=mask`. `compiled`: wrap
    FlexAttention in torch.compile (default: on CUDA). Inside a compiled region (a compiled
    backbone) the BlockMask is built in the graph (no cache lookup, so no graph break).
    """
    global _compiled_flex
    if torch.compiler.is_compiling():
        return flex_attention(q, k, v, block_mask=convert(mask))
    block_mask = block_mask_from_dense(mask)
    if compiled is None:
        compiled = q.is_cuda
    if not compiled:
        if not q.is_cuda:  # eager FlexAttention on CPU is a reference path (tests) only
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return flex_attention(q, k, v, block_mask=block_mask)
        return flex_attention(q, k, v, block_mask=block_mask)
    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex(q, k, v, block_mask=block_mask)
