"""NELBO evaluation: bits per token and perplexity, deterministic or Monte Carlo.

Deterministic mode integrates over a fixed midpoint grid of times t_j = (j + ½)/n with a
fixed seed per (batch, grid point), so the same checkpoint always reports the same number.
Monte Carlo mode uses independent low-discrepancy draws and reports a standard error.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor

from oemdm_core.model import OeMDM


@dataclass
class EvalResult:
    """NELBO of a data set.

    nats_per_sequence: mean bound per sequence; bits_per_token = nats / (L·ln 2);
    perplexity = exp(nats / L); stderr_bits: standard error of bits_per_token across
    sequences (over both data and the bound's own randomness).
    """

    mode: str
    nats_per_sequence: float
    bits_per_token: float
    perplexity: float
    stderr_bits: float
    num_sequences: int
    tokens_per_sequence: int
    steps: int | None

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate(
    model: OeMDM,
    batches: Iterable[Tensor],
    mode: Literal["deterministic", "monte-carlo"] = "deterministic",
    num_times: int = 16,
    seed: int = 0,
    steps: int | None = None,
) -> EvalResult:
    """Evaluate the NELBO of every sequence in `batches` (each `[B, L]`, same L).

    num_times: grid points (deterministic) or independent draws (Monte Carlo) per sequence.
    steps: evaluate the discrete-time bound L_T with T = steps instead of the continuous one.
    """
    if mode not in ("deterministic", "monte-carlo"):
        raise ValueError(f"mode must be 'deterministic' or 'monte-carlo', got {mode!r}")
    if num_times < 1:
        raise ValueError(f"num_times must be >= 1, got {num_times}")
    was_training = model.training
    model.eval()
    per_sequence: list[Tensor] = []
    length = None
    device = model.device
    try:
        for b, x in enumerate(batches):
            x = x.to(device)
            if length is not None and x.shape[1] != length:
                raise ValueError(
                    f"all batches must have the same length; got {x.shape[1]} after {length}"
                )
            length = x.shape[1]
            totals = torch.zeros(x.shape[0], dtype=torch.float64, device=device)
            for j in range(num_times):
                generator = torch.Generator(device=device).manual_seed(
                    seed * 1_000_003 + b * 10_007 + j
                )
                t = None
                if mode == "deterministic":
                    t = torch.full((x.shape[0],), (j + 0.5) / num_times, device=device)
                terms = model.nelbo(x, t=t, steps=steps, generator=generator)
                totals += terms.total.double()
            per_sequence.append((totals / num_times).cpu())
    finally:
        model.train(was_training)
    if not per_sequence:
        raise ValueError("no data to evaluate: the batches iterable was empty")
    values = torch.cat(per_sequence)
    nats = float(values.mean())
    stderr = (
        float(values.std(unbiased=True) / math.sqrt(len(values)))
        if len(values) > 1
        else float("nan")
    )
    scale = length * math.log(2.0)
    return EvalResult(
        mode=mode,
        nats_per_sequence=nats,
        bits_per_token=nats / scale,
        perplexity=math.exp(nats / length),
        stderr_bits=stderr / scale,
        num_sequences=len(values),
        tokens_per_sequence=length,
        steps=steps,
    )
