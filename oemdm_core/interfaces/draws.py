"""Random draws shared by samplers: float64 uniforms and Gumbel noise, temperature and
nucleus filtering, and the options that set them (`DrawOptions`)."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from oemdm_core.plugin.component import Options


def uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str
) -> Tensor:
    """U(0, 1) draws in float64 on `device`, made on the generator's device."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=source).to(device)


def gumbel_noise(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Standard Gumbel noise in float64 (float32 noise measurably lowers sample diversity)."""
    source = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=source).to(device)
    tiny = torch.finfo(torch.float64).tiny
    # Unary minus binds looser than the method call: negate before clamping, or log(-tiny) = NaN.
    return -torch.log((-torch.log(u.clamp_min(tiny))).clamp_min(tiny))


def top_p_filter(logp: Tensor, top_p: float) -> Tensor:
    """Keep the smallest set of tokens whose probability reaches `top_p`; others get −inf.

    logp: `[..., V]` log-probabilities. The most likely token is always kept.
    """
    if top_p >= 1.0:
        return logp
    sorted_logp, idx = logp.sort(dim=-1, descending=True)
    cum = sorted_logp.exp().cumsum(-1)
    drop_sorted = (cum - sorted_logp.exp()) >= top_p  # mass before this token already reaches p
    drop = torch.zeros_like(drop_sorted).scatter(-1, idx, drop_sorted)
    return logp.masked_fill(drop, float("-inf"))


def sample_tokens(
    logits: Tensor,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> Tensor:
    """Draw one token per position from `softmax(logits / temperature)`, nucleus-filtered.

    logits: `[..., V]`. Returns ids `[...]`. temperature 0 means argmax.
    """
    if temperature == 0:
        return logits.argmax(-1)
    logp = torch.log_softmax(logits.double() / temperature, dim=-1)
    logp = top_p_filter(logp, top_p)
    return (logp + gumbel_noise(tuple(logp.shape), generator, logp.device)).argmax(-1)


class DrawOptions(Options):
    """The token-draw options of the samplers (`sample_tokens`): temperature and top_p."""

    temperature: float = Field(default=1.0, ge=0.0, description="Softmax temperature (0 = argmax).")
    top_p: float = Field(
        default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass in (0, 1]."
    )
