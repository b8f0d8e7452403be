"""The `oracle` backbone: the exact denoiser of a chain task, p(x_i | the revealed tokens),
computed by forward–backward. It has no parameters and ignores t.

For every fixed (data-independent) order it is the Bayes-optimal denoiser, so the
continuous-time NELBO of any fixed order with it equals −log p(x)
(docs/reports/2026-12-03-learned-order.md, §1); what orders differ in is then only the discrete-time bound L_T and
what a learned denoiser can learn. For a learned order whose forward schedule reads x, the
mask pattern carries information about x that this denoiser ignores.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field, model_validator
from torch import Tensor
from typing_extensions import Self

import oemdm_core
from oemdm_core import Backbone, DenoiserOutput, Options
from oemdm_tasks.chains import Task, build_task


class OracleBackbone(Backbone):
    """Exact conditionals of a chain task (`task`, see `oemdm_tasks.chains`) as logits."""

    name = "oracle"
    uses_time = False
    exposes_hidden = False
    hidden_size = 0

    class Options(oemdm_core.Options):
        vocab_size: int = Field(default=16, ge=2, description="V = 2·symbols (r and y tokens).")
        max_length: int = Field(default=32, ge=1, description="L, the task's sequence length.")
        task: Task = Field(default="lookup_chain", description="The chain task.")
        symbols: int = Field(default=8, ge=2, description="K, values of r and of y.")
        table_seed: int = Field(default=7, description="Seed of the lookup table T.")
        smoothing: float = Field(
            default=1e-9,
            gt=0,
            lt=1e-3,
            description="Emissions mixed with ε of the uniform law (finite logits on any input).",
        )

        @model_validator(mode="after")
        def _vocab_is_two_alphabets(self) -> Self:
            if self.vocab_size != 2 * self.symbols:
                raise ValueError(
                    f"vocab_size must be 2·symbols = {2 * self.symbols} (r and y tokens), "
                    f"got {self.vocab_size}"
                )
            return self

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        o = self.options
        self.vocab_size, self.max_length = o.vocab_size, o.max_length
        task = build_task(o.task, o.max_length, o.symbols, o.table_seed)
        self.task = type(task)(task.chain.smoothed(o.smoothing), task.reverse)

    def entropy(self) -> float:
        """H(x) of the task in nats per sequence: P·log K for the P = ⌈L/2⌉ fresh r's."""
        return ((self.max_length + 1) // 2) * math.log(self.options.symbols)

    def log_likelihood(self, x: Tensor) -> Tensor:
        """log p(x) under the (smoothed) task: `[B]` float64 nats."""
        return self.task.log_likelihood(x.cpu()).to(x.device)

    def forward(self, tokens: Tensor, t: Tensor | None = None) -> DenoiserOutput:
        """tokens `[B, n]` (n ≤ max_length, mask id V) → logits `[B, n, V]` float32, the exact
        log p(x_i = v | revealed j ≠ i); t is ignored; no hidden states."""
        if tokens.shape[1] > self.max_length:
            raise ValueError(
                f"sequence length {tokens.shape[1]} exceeds max_length {self.max_length}"
            )
        logp = self.task.conditionals(tokens.cpu(), self.vocab_size)
        return DenoiserOutput(logits=logp.to(device=tokens.device, dtype=torch.float32))
