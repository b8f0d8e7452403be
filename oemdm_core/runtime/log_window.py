"""The log window: each step's training statistics since the last logged step, kept on the
device and copied to the host once per logging interval (the loop's only host sync), then
turned into the logged `train/*` scalars."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

# Columns of a row: the NELBO and its terms (nats per sequence), the global grad norm, then
# the grad norm of each parameter group (`run_log.parameter_groups`), all before clipping.
TOTAL, RECONSTRUCTION, VELOCITY_MATCHING, GRAD_NORM, GROUPS = 0, 1, 2, 3, 4


@dataclass
class LogWindow:
    """The steps after `start` not logged yet: one row `[4 + G]` per step, on the device.

    tokens: tokens trained on in the window (all processes); t0: when the window began.
    """

    start: int
    rows: list[Tensor] = field(default_factory=list)
    tokens: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def add(self, terms: Tensor, grad_norm: Tensor, group_norms: Tensor, tokens: int) -> None:
        """One step: `terms [3]` (total, reconstruction, velocity matching, nats per
        sequence), `grad_norm []` and `group_norms [G]`; no host sync."""
        self.tokens += tokens
        self.rows.append(
            torch.cat([terms, grad_norm.detach().float().reshape(1), group_norms.to(terms.device)])
        )

    def gather(self, world: int) -> Tensor:
        """The window's rows on the host, `[steps, 4 + G]`, averaged over the `world`
        processes: the loop's only host synchronisation."""
        stacked = torch.stack(self.rows)  # [steps in window, 4 + G]
        if world > 1:
            dist.all_reduce(stacked)
            stacked /= world
        return stacked.cpu()

    def scalars(
        self, values: Tensor, length: int, lr: float, groups: list[str]
    ) -> dict[str, float]:
        """The `train/*` scalars of gathered `values` for sequences of `length` tokens:
        bits per token of the bound and its terms, nats per sequence, grad norms, the
        learning rate and the throughput."""
        scale = 1 / (length * math.log(2))
        elapsed = time.perf_counter() - self.t0
        mean = values.mean(dim=0)
        scalars = {
            "train/bits_per_token": float(mean[TOTAL]) * scale,
            "train/reconstruction_bits_per_token": float(mean[RECONSTRUCTION]) * scale,
            "train/velocity_matching_bits_per_token": float(mean[VELOCITY_MATCHING]) * scale,
            "train/nats_per_sequence": float(mean[TOTAL]),
            "train/grad_norm": float(mean[GRAD_NORM]),
            "train/lr": lr,
            "train/tokens_per_s": self.tokens / max(elapsed, 1e-9),
        }
        for i, name in enumerate(groups):
            scalars[f"train/grad_norm/{name}"] = float(mean[GROUPS + i])
        return scalars

    def reset(self, step: int) -> None:
        """Start a new window after `step`."""
        self.start, self.rows, self.tokens, self.t0 = step, [], 0, time.perf_counter()


def bits_per_token(values: Tensor, length: int) -> list[float]:
    """The training loss of each gathered step in bits per token."""
    return (values[:, TOTAL] * (1 / (length * math.log(2)))).tolist()
