"""Logging of a training run: TensorBoard (scalars, histograms, images, text, hparams) and a
`metrics.jsonl` file with one JSON object per logged step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from oemdm_core.runtime.fsdp import full_value

TB_DIR = "tb"
METRICS_FILE = "metrics.jsonl"


def order_figure(order: Tensor):
    """A matplotlib figure of `order: [N, L]` (step at which each position was un-masked)."""
    from oemdm_core.runtime import visualize

    return visualize.order_heatmap(order)


def parameter_groups(model) -> dict[str, list[nn.Parameter]]:
    """The parameter groups whose gradient norms are logged: `backbone`, then the order's
    own groups (`Order.parameter_groups`, e.g. LoMDM's forward and reverse schedulers)."""
    return {"backbone": list(model.backbone.parameters()), **model.order.parameter_groups()}


def group_grad_norms(groups: dict[str, list[nn.Parameter]]) -> Tensor:
    """L2 norm of the gradients of each group, `[G]` (0 for a group without gradients);
    computed on the device, no host sync (sharded gradients: a collective)."""
    norms = []
    for params in groups.values():
        grads = [p.grad for p in params if p.grad is not None]
        if grads:
            norms.append(full_value(torch.nn.utils.get_total_norm(grads)))
        else:
            norms.append(torch.zeros((), device=params[0].device if params else "cpu"))
    return torch.stack([n.float() for n in norms])


def order_statistics(w: Tensor) -> dict[str, float]:
    """Spread of an order's weights `w: [B, L]` (higher = generated earlier): their mean and
    standard deviation over the batch, and the mean over rows of the Pearson correlation of
    w with position (−1: earlier positions first, i.e. left to right; 0: no positional
    preference; rows with constant w count as 0)."""
    w = w.detach().double()
    position = torch.arange(w.shape[1], dtype=torch.float64, device=w.device)
    wc, pc = w - w.mean(-1, keepdim=True), position - position.mean()
    denominator = wc.norm(dim=-1) * pc.norm()
    corr = torch.where(denominator > 0, (wc * pc).sum(-1) / denominator.clamp_min(1e-300), 0.0)
    return {
        "order/w_mean": float(w.mean()),
        "order/w_std": float(w.std()) if w.numel() > 1 else 0.0,
        "order/w_position_corr": float(corr.mean()),
    }


class RunLogger:
    """Writes to `<run_dir>/tb` and `<run_dir>/metrics.jsonl`; a no-op when `enabled` is False
    (ranks other than 0)."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.writer: Any = None  # a SummaryWriter when enabled
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / TB_DIR))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    def order_weights(self, step: int, model, x: Tensor) -> None:
        """Histogram of a learned order's Plackett–Luce weights on a batch `x: [B, L]`
        (`OeMDM.generation_weights`; nothing for orders without them)."""
        if not self.enabled or not model.order.learned:
            return
        with torch.no_grad():
            w = model.generation_weights(x)
        if w is not None:
            self.writer.add_histogram("order/weights", w.detach().float().cpu(), step)

    def samples(self, step: int, texts: list[str], order: Tensor | None) -> None:
        if not self.enabled:
            return
        for i, text in enumerate(texts):
            self.writer.add_text(f"samples/{i}", "```\n" + text + "\n```", step)
        if order is not None and order.numel():
            self.writer.add_figure("samples/generation_order", order_figure(order), step)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {
            k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()
        }
        self.writer.add_hparams(clean, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
