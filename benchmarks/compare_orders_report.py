"""Sample metrics, aggregation across seeds, the markdown table and the PNG plots of
`compare_orders.py` (and of `synthetic_order_task.py`)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from oemdm_core import OeMDM


# -- sample metrics ----------------------------------------------------------------------
def unigram_entropy(tokens: Tensor) -> float:
    """Entropy in bits of the token frequencies of `tokens: [...]` (all positions pooled)."""
    counts = torch.bincount(tokens.reshape(-1).long()).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log2()).sum())


# -- aggregation ---------------------------------------------------------------------------
@dataclass
class Stat:
    """Mean and standard error across seeds (SE is None for one seed)."""

    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else float("nan")

    @property
    def se(self) -> float | None:
        n = len(self.values)
        return statistics.stdev(self.values) / math.sqrt(n) if n > 1 else None

    def fmt(self, digits: int = 3) -> str:
        if not self.values:
            return "–"
        se = self.se
        return f"{self.mean:.{digits}f}" + (f" ± {se:.{digits}f}" if se is not None else "")


def aggregate(rows: Sequence[dict], keys: Sequence[str]) -> dict[tuple[str, str], dict[str, Stat]]:
    """{(setting, model): {metric: Stat over seeds}} for the metric names `keys`."""
    out: dict[tuple[str, str], dict[str, Stat]] = defaultdict(lambda: defaultdict(Stat))
    for row in rows:
        group = out[(row["setting"], row["model"])]
        for key in keys:
            value = row.get(key)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                group[key].values.append(float(value))
    return out


@dataclass
class Column:
    """One column of the results table: a header, the metric and its number of digits."""

    header: str
    key: str
    digits: int = 3


def markdown_table(
    rows: Sequence[dict],
    setting: str,
    models: Sequence[str],
    columns: Sequence[Column],
    extra: Callable[[str], str] | None = None,
    extra_header: str | None = None,
) -> str:
    """A markdown table of one setting: one line per model, mean ± SE across seeds."""
    stats = aggregate([r for r in rows if r["setting"] == setting], [c.key for c in columns])
    header = ["model", "seeds", *(c.header for c in columns)] + ([extra_header] if extra else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        group = stats.get((setting, model))
        if not group:
            continue
        seeds = max(len(s.values) for s in group.values()) if group else 0
        cells = [model, str(seeds)]
        cells += [group[c.key].fmt(c.digits) for c in columns]
        if extra:
            cells.append(extra(model))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- plots -----------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, tight: bool = True, **savefig: Any) -> Path:
    """Lay out (unless `tight` is False), write `fig` to `path` as PNG and close it."""
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110, **savefig)
    _plt().close(fig)
    return path


def smooth(values: Sequence[float], width: int) -> list[float]:
    """Trailing moving average over `width` points."""
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > width:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def plot_learning_curves(rows: Sequence[dict], settings: Sequence[str], path: Path) -> Path:
    """Train bits/token (single-draw estimates, smoothed, mean over seeds) against backbone
    sequence-passes, one panel per setting."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        curves: dict[str, list[list[tuple[int, float]]]] = defaultdict(list)
        scale: dict[str, float] = {}
        for row in rows:
            if row["setting"] == setting and row["curve"]:
                curves[row["model"]].append(row["curve"])
                scale[row["model"]] = row["backbone_passes"] / row["steps"]  # per step
        for model, runs in curves.items():
            steps = [s for s, _ in runs[0]]
            mean = [
                statistics.fmean(r[i][1] for r in runs if i < len(r)) for i in range(len(steps))
            ]
            x = [s * scale[model] for s in steps]
            ax.plot(x, smooth(mean, max(1, len(mean) // 10)), label=model)
        ax.set_xlabel("backbone sequence-passes (steps × passes/step × batch)")
        ax.set_ylabel("train bits/token (NELBO estimate)")
        ax.set_title(f"setting: {setting}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def average_rank(order: Tensor) -> Tensor:
    """Generation rank of each position, `[N, L]` → `[N, L]` float in [0, L − 1] (0 = first),
    ties (positions un-masked in the same step) sharing their average rank."""
    order = order.float()
    earlier = (order[:, None, :] < order[:, :, None]).sum(-1)  # [N, L]: positions before i
    tied = (order[:, None, :] == order[:, :, None]).sum(-1)  # [N, L]: including i itself
    return earlier + 0.5 * (tied - 1)


def order_correlation(order: torch.Tensor, positions: slice = slice(None)) -> float:
    """Mean over samples of the Spearman correlation between position and generation rank
    (`order: [N, L]`, the step each position was un-masked; ties get their average rank),
    over the positions selected by `positions`: +1 = left to right, −1 = right to left."""
    rank = average_rank(order[:, positions])  # [N, n]
    position = torch.arange(rank.shape[1], dtype=torch.float32)
    rank, position = rank - rank.mean(-1, keepdim=True), position - position.mean()
    corr = (rank * position).sum(-1) / (rank.norm(dim=-1) * position.norm()).clamp_min(1e-12)
    return float(corr.mean())


def plot_orders(orders: dict[str, Tensor], path: Path, title: str) -> Path:
    """Heatmaps of generation orders `[N, L]` (step each position was un-masked), one panel
    per model, each row of a panel normalised to its rank in [0, 1] (0 = generated first)."""
    plt = _plt()
    fig, axes = plt.subplots(len(orders), 1, figsize=(10, 0.6 + 1.2 * len(orders)), squeeze=False)
    for ax, (name, order) in zip(axes[:, 0], orders.items(), strict=True):
        rank = average_rank(order) / max(1, order.shape[1] - 1)
        image = ax.imshow(rank.numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_ylabel(name, rotation=0, ha="right", va="center")
        ax.set_yticks([])
    axes[-1, 0].set_xlabel("position")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="generation rank (0 = first)")
    fig.suptitle(title)
    return save_figure(fig, path, tight=False)


def plot_mean_rank(orders: dict[str, Tensor], path: Path, title: str) -> Path:
    """Mean generation rank per position (over samples), one line per model."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for name, order in orders.items():
        rank = average_rank(order) / max(1, order.shape[1] - 1)
        ax.plot(rank.mean(0).numpy(), label=name)
    ax.set_xlabel("position")
    ax.set_ylabel("mean generation rank (0 = first)")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_priorities(
    text: str, weights: dict[str, Tensor], path: Path, title: str, width: int = 64
) -> Path:
    """A test passage drawn character by character on a grid, one panel per model, each cell
    coloured by the model's exponent w^i (higher = generated earlier in reverse time)."""
    plt = _plt()
    rows = math.ceil(len(text) / width)
    fig, axes = plt.subplots(
        len(weights),
        1,
        figsize=(width * 0.17, 0.8 + len(weights) * (0.6 + rows * 0.3)),
        squeeze=False,
        layout="constrained",
    )
    for ax, (name, w) in zip(axes[:, 0], weights.items(), strict=True):
        w = w.float().cpu()
        grid = torch.full((rows * width,), float("nan"))
        grid[: len(w)] = w
        image = ax.imshow(grid.view(rows, width).numpy(), aspect="auto", cmap="coolwarm")
        for i, ch in enumerate(text):
            r, c = divmod(i, width)
            ax.text(c, r, ch if ch != "\n" else "⏎", ha="center", va="center", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name}: exponent w per character (red = generated earlier)", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.02)
    fig.suptitle(title)
    return save_figure(fig, path, tight=False, bbox_inches="tight")


@torch.no_grad()
def order_exponents(model: OeMDM, x: Tensor) -> Tensor | None:
    """Per-position exponents w `[B, L]` of a learned power-law forward schedule
    (LoMDM: w^i(x); GenMD4: w[x^i]); None for orders without them."""
    if not model.order.learned:
        return None
    return getattr(model.forward_schedule(x.to(model.device)), "w", None)
