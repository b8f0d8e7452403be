"""`HiddenMarkovChain`: a position-dependent hidden Markov model over token sequences, with the
exact quantities an oracle denoiser needs, computed by forward–backward in float64.

    h_0 ~ initial,   h_i | h_{i−1} ~ transitions[i−1],   x_i | h_i ~ emissions[i]

Shapes: initial `[S]`, transitions `[L−1, S, S]` (row: state at i−1, column: state at i),
emissions `[L, S, V]`; S hidden states, V tokens, L positions. Every quantity is in nats.

`conditionals(tokens, mask_id)` is the exact denoiser of masked diffusion with a fixed
(data-independent) order: for every position i, log p(x_i = v | the revealed tokens j ≠ i),
where a token equal to `mask_id` is not revealed. For a masked position that is
p(x_i | z_t); for a revealed one it is the leave-one-out conditional.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class HiddenMarkovChain:
    """An HMM over sequences of length L (float64 tensors; shapes in the module docstring)."""

    initial: Tensor
    transitions: Tensor
    emissions: Tensor

    def __post_init__(self) -> None:
        length, states, _ = self.emissions.shape
        if self.initial.shape != (states,):
            raise ValueError(f"initial must have shape [{states}], got {tuple(self.initial.shape)}")
        if self.transitions.shape != (max(length - 1, 0), states, states):
            raise ValueError(
                f"transitions must have shape [{length - 1}, {states}, {states}], "
                f"got {tuple(self.transitions.shape)}"
            )

    @property
    def length(self) -> int:
        return self.emissions.shape[0]

    @property
    def vocab_size(self) -> int:
        return self.emissions.shape[2]

    def smoothed(self, epsilon: float) -> HiddenMarkovChain:
        """Emissions mixed with the uniform law, (1 − ε)·B + ε/V: every sequence then has a
        positive probability, so any evidence gives finite conditionals."""
        uniform = torch.full_like(self.emissions, 1.0 / self.vocab_size)
        return HiddenMarkovChain(
            self.initial, self.transitions, (1.0 - epsilon) * self.emissions + epsilon * uniform
        )

    def marginal(self, position: int) -> Tensor:
        """p(h_position), `[S]`."""
        p = self.initial
        for i in range(position):
            p = p @ self.transitions[i]
        return p

    def window(self, start: int, stop: int) -> HiddenMarkovChain:
        """The law of positions [start, stop) as a chain of its own (`stop − start` positions)."""
        if not 0 <= start < stop <= self.length:
            raise ValueError(f"window [{start}, {stop}) must lie in [0, {self.length}]")
        return HiddenMarkovChain(
            self.marginal(start), self.transitions[start : stop - 1], self.emissions[start:stop]
        )

    def _evidence(self, tokens: Tensor, mask_id: int) -> Tensor:
        """e_i(h) = B_i[h, x_i] at revealed positions, 1 at masked ones: `[B, n, S]`."""
        n = tokens.shape[1]
        revealed = tokens != mask_id
        ids = torch.where(revealed, tokens, torch.zeros_like(tokens))  # [B, n]
        emissions = self.emissions[:n].transpose(1, 2)  # [n, V, S]
        positions = torch.arange(n, device=tokens.device)
        e = emissions[positions[None, :], ids]  # [B, n, S]
        return torch.where(revealed[..., None], e, torch.ones_like(e))

    def conditionals(self, tokens: Tensor, mask_id: int) -> Tensor:
        """log p(x_i = v | revealed tokens other than i): `[B, n, V]` float64 for `tokens`
        `[B, n]` (n ≤ L; the first n positions of the chain)."""
        batch, n = tokens.shape
        evidence = self._evidence(tokens, mask_id)  # [B, n, S]
        states = self.initial.shape[0]
        predicted = torch.empty(batch, n, states, dtype=torch.float64, device=tokens.device)
        a = self.initial.expand(batch, states)
        for i in range(n):  # predicted_i = p(h_i | evidence < i)
            predicted[:, i] = a
            if i + 1 < n:
                f = a * evidence[:, i]
                a = (f / f.sum(-1, keepdim=True)) @ self.transitions[i]
        backward = torch.empty_like(predicted)
        b = torch.ones(batch, states, dtype=torch.float64, device=tokens.device)
        for i in range(n - 1, -1, -1):  # backward_i ∝ p(evidence > i | h_i)
            backward[:, i] = b
            if i > 0:
                b = (evidence[:, i] * b) @ self.transitions[i - 1].T
                b = b / b.sum(-1, keepdim=True)
        posterior = predicted * backward  # ∝ p(h_i | evidence ≠ i)
        posterior = posterior / posterior.sum(-1, keepdim=True)
        probs = torch.einsum("bns,nsv->bnv", posterior, self.emissions[:n])
        return torch.log(probs)

    def log_likelihood(self, x: Tensor) -> Tensor:
        """log p(x) for clean `x: [B, n]` (the first n positions): `[B]` float64 nats."""
        evidence = self._evidence(x, mask_id=-1)  # no position is masked
        a = self.initial.expand(x.shape[0], -1)
        total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for i in range(x.shape[1]):
            f = a * evidence[:, i]
            norm = f.sum(-1)
            total = total + torch.log(norm)
            if i + 1 < x.shape[1]:
                a = (f / norm[:, None]) @ self.transitions[i]
        return total

    def sample(self, num: int, generator: torch.Generator | None = None) -> Tensor:
        """`[num, L]` sequences drawn from the chain."""
        h = torch.multinomial(self.initial.expand(num, -1), 1, generator=generator)[:, 0]
        out = torch.empty(num, self.length, dtype=torch.long)
        for i in range(self.length):
            if i > 0:
                h = torch.multinomial(self.transitions[i - 1][h], 1, generator=generator)[:, 0]
            out[:, i] = torch.multinomial(self.emissions[i][h], 1, generator=generator)[:, 0]
        return out
