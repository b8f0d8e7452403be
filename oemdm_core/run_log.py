"""Logging of a training run: TensorBoard (scalars, histograms, images, text, hparams) and a
`metrics.jsonl` file with one JSON object per logged step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

TB_DIR = "tb"
METRICS_FILE = "metrics.jsonl"


def order_figure(order: Tensor, title: str = "generation order"):
    """A matplotlib figure of `order: [N, L]` (step at which each position was un-masked)."""
    try:
        from oemdm_core import visualize

        if hasattr(visualize, "order_heatmap"):
            return visualize.order_heatmap(order)
    except ImportError:
        pass
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.4 + 0.35 * order.shape[0]))
    image = ax.imshow(order.float().cpu().numpy(), aspect="auto", cmap="viridis")
    ax.set_xlabel("position")
    ax.set_ylabel("sample")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="step un-masked")
    return fig


class RunLogger:
    """Writes to `<run_dir>/tb` and `<run_dir>/metrics.jsonl`; a no-op when `enabled` is False
    (ranks other than 0)."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.writer = None
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
        """Histogram of a learned order's weights on a batch `x: [B, L]`: an optional
        `order.order_weights(x, features)` method, else the `w` of its forward schedule."""
        if not self.enabled or not model.order.learned:
            return
        try:
            with torch.no_grad():
                if hasattr(model.order, "order_weights"):
                    features = model.clean_features(x) if model.order.needs_features else None
                    try:
                        w = model.order.order_weights(x, features)
                    except TypeError:
                        w = model.order.order_weights(x)
                else:  # per-position exponents of power schedules α = 1 − t^w (LoMDM, GenMD4)
                    w = getattr(model.forward_schedule(x), "w", None)
        except Exception as exc:  # an optional plot must never stop training
            print(f"note: order_weights histogram skipped ({type(exc).__name__}: {exc})")
            return
        if isinstance(w, Tensor):
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
