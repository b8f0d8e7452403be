"""Chain tasks with a known best generation order, as `HiddenMarkovChain`s.

`lookup_chain(pairs, symbols, table_seed)`: the sequence r_1 y_1 … r_P y_P (L = 2P) with
r_k ~ U{0..K−1} fresh and y_k = T[y_{k−1}, r_k], y_0 = 0, for a fixed random K × K table T
(a random function of y for every r). Token ids: r_k → r_k ∈ [0, K), y_k → K + y_k, so
V = 2K. Every chain has probability K^−P, so the entropy is P·log K nats (log2 K / 2 bits
per token). Left to right each y_k is a lookup of the two positions before it; in any other
order some step needs inference over the chain. The same data as
`benchmarks/lookup_chain_task.py` (table seed 7).

Hidden state at position i: the pair (y, r) (index y·K + r): at r_k it is (y_{k−1}, r_k),
at y_k it is (y_k, r_k); emissions are deterministic.

The reversed task (the same sequences read right to left, whose best order is right to left)
is served by flipping positions: see `ChainTask`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch
from torch import Tensor

from oemdm_tasks.hmm import HiddenMarkovChain

Task = Literal["lookup_chain", "reverse_lookup_chain"]
TASKS: tuple[str, ...] = get_args(Task)


def chain_table(symbols: int = 8, seed: int = 7) -> np.ndarray:
    """T `[K, K]`: y_k = T[y_{k−1}, r_k] (the benchmark's table for the same seed)."""
    return np.random.default_rng(seed).integers(0, symbols, size=(symbols, symbols))


def lookup_chain(pairs: int, symbols: int = 8, table_seed: int = 7) -> HiddenMarkovChain:
    """The lookup chain of `pairs` (r, y) pairs as an HMM with K² states (module docstring)."""
    if pairs < 1 or symbols < 2:
        raise ValueError(f"need pairs >= 1 and symbols >= 2, got {pairs}, {symbols}")
    k = symbols
    table = torch.as_tensor(chain_table(k, table_seed))
    states = k * k
    y_of = torch.arange(states) // k
    r_of = torch.arange(states) % k
    initial = torch.zeros(states, dtype=torch.float64)
    initial[:k] = 1.0 / k  # states (y_0 = 0, r_1) for every r_1
    lookup = torch.zeros(states, states, dtype=torch.float64)  # r_k → y_k: (y, r) → (T[y,r], r)
    lookup[torch.arange(states), table[y_of, r_of] * k + r_of] = 1.0
    fresh = (y_of[:, None] == y_of[None, :]).to(torch.float64) / k  # y_k → r_{k+1}
    length = 2 * pairs
    transitions = torch.stack([lookup if i % 2 == 0 else fresh for i in range(length - 1)])
    emit_r = torch.zeros(states, 2 * k, dtype=torch.float64)
    emit_r[torch.arange(states), r_of] = 1.0
    emit_y = torch.zeros(states, 2 * k, dtype=torch.float64)
    emit_y[torch.arange(states), k + y_of] = 1.0
    emissions = torch.stack([emit_r if i % 2 == 0 else emit_y for i in range(length)])
    return HiddenMarkovChain(initial, transitions, emissions)


@dataclass(frozen=True)
class ChainTask:
    """A chain read left to right (`reverse` False) or right to left: sampling, exact
    log-likelihood and exact conditionals for sequences of any length n ≤ L (the first n
    positions of the task's sequences)."""

    chain: HiddenMarkovChain
    reverse: bool = False

    @property
    def length(self) -> int:
        return self.chain.length

    def _chain_for(self, n: int) -> HiddenMarkovChain:
        if not 1 <= n <= self.length:
            raise ValueError(f"sequence length {n} must lie in [1, {self.length}]")
        if n == self.length:
            return self.chain
        return (
            self.chain.window(self.length - n, self.length)
            if self.reverse
            else (self.chain.window(0, n))
        )

    def _oriented(self, tokens: Tensor) -> Tensor:
        return tokens.flip(1) if self.reverse else tokens

    def conditionals(self, tokens: Tensor, mask_id: int) -> Tensor:
        """log p(x_i = v | revealed j ≠ i): `[B, n, V]` float64 (see `HiddenMarkovChain`)."""
        logp = self._chain_for(tokens.shape[1]).conditionals(self._oriented(tokens), mask_id)
        return logp.flip(1) if self.reverse else logp

    def log_likelihood(self, x: Tensor) -> Tensor:
        """log p(x), `[B]` float64 nats."""
        return self._chain_for(x.shape[1]).log_likelihood(self._oriented(x))

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """`[num, L]` sequences of the task."""
        return self._oriented(self.chain.sample(num, generator))


def build_task(name: str, length: int, symbols: int = 8, table_seed: int = 7) -> ChainTask:
    """The task `name` (one of `TASKS`) with sequences of `length` positions."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
    chain = lookup_chain((length + 1) // 2, symbols, table_seed)
    if length % 2:
        chain = chain.window(0, length)
    return ChainTask(chain, reverse=name == "reverse_lookup_chain")
