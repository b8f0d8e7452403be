"""Seeing the generation order: heatmaps of `SampleResult.order` and token priorities w^i(x).

Figures are built with `matplotlib.figure.Figure` and rendered by Agg, without pyplot, so
nothing here changes the user's matplotlib backend. Every function returns the figure (e.g.
for `SummaryWriter.add_figure`) and writes a file if `path` is given.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence

import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor


def order_matrix(order: Tensor) -> Tensor:
    """Position × step frequencies, `[L, S]` float: entry (i, s) is the fraction of the
    samples in which position i was un-masked at step s (S = largest step + 1).

    order: `[L]` or `[N, L]` long steps as in `SampleResult.order`; entries < 0 (positions
    given by the caller) are left out.
    """
    if order.dim() == 1:
        order = order[None]
    if order.dim() != 2:
        raise ValueError(f"order must have shape [L] or [N, L], got {tuple(order.shape)}")
    order = order.detach().long().cpu()
    steps = int(order.max()) + 1 if order.numel() and int(order.max()) >= 0 else 1
    counts = torch.zeros(order.shape[1], steps)
    generated = order >= 0
    rows = torch.arange(order.shape[1]).expand_as(order)[generated]
    counts.index_put_((rows, order[generated]), torch.ones(rows.shape[0]), accumulate=True)
    return counts / order.shape[0]


def order_heatmap(
    order: Tensor, path: str | os.PathLike | None = None, title: str | None = None
) -> Figure:
    """Heatmap of the generation order: positions on the y axis, steps on the x axis.

    order: `[L]` (one sample: one cell per position) or `[N, L]` (frequency over samples).
    Writes a PNG to `path` if given. Returns the figure.
    """
    matrix = order_matrix(order)
    length, steps = matrix.shape
    fig = Figure(
        figsize=(min(max(5, 2 + 0.12 * steps), 14), min(max(3.5, 1.5 + 0.12 * length), 12))
    )
    ax = fig.add_subplot()
    image = ax.imshow(
        matrix.numpy(), aspect="auto", origin="lower", cmap="viridis", interpolation="nearest"
    )
    ax.set_xlabel("step (generation order)")
    ax.set_ylabel("position")
    samples = 1 if order.dim() == 1 else order.shape[0]
    ax.set_title(title or f"generation order ({samples} sample{'s' if samples > 1 else ''})")
    fig.colorbar(image, ax=ax, label="fraction of samples")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return fig


def _normalise(w: Tensor | Sequence[float], count: int) -> tuple[list[float], list[float]]:
    values = torch.as_tensor(w, dtype=torch.float64).detach().cpu().flatten()
    if values.numel() != count:
        raise ValueError(f"need one priority per token: got {values.numel()} for {count} tokens")
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) / (hi - lo) if hi > lo else torch.full_like(values, 0.5)
    return values.tolist(), scaled.tolist()


def token_priority_html(
    tokens: Sequence[str], w: Tensor | Sequence[float], path: str | os.PathLike | None = None
) -> str:
    """HTML with each token's background coloured by its priority w^i(x) (yellow = highest:
    generated earliest in expectation; dark = latest). A tooltip shows the value.

    tokens: L strings; w: `[L]` priorities. Writes the page to `path` if given.
    """
    values, scaled = _normalise(w, len(tokens))
    cmap = colormaps["viridis"]
    spans = []
    for token, value, x in zip(tokens, values, scaled, strict=True):
        r, g, b, _ = cmap(x)
        text = "#000" if x > 0.5 else "#fff"
        spans.append(
            f'<span title="w={value:.3f}" style="background:rgb({int(255 * r)},{int(255 * g)},'
            f'{int(255 * b)});color:{text};padding:1px 2px;white-space:pre">'
            f"{html.escape(token)}</span>"
        )
    page = (
        '<!doctype html><meta charset="utf-8"><title>token priorities</title>'
        '<p style="font-family:monospace;line-height:1.8">' + "".join(spans) + "</p>\n"
    )
    if path is not None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    return page


def token_priority_png(
    tokens: Sequence[str],
    w: Tensor | Sequence[float],
    path: str | os.PathLike | None = None,
    per_row: int = 16,
) -> Figure:
    """The tokens in a grid (`per_row` per line), each cell coloured by its priority w^i(x),
    with a colour bar. Writes a PNG to `path` if given. Returns the figure."""
    values, scaled = _normalise(w, len(tokens))
    rows = max(1, -(-len(tokens) // per_row))
    fig = Figure(figsize=(2 + 0.7 * min(per_row, len(tokens)), 1.2 + 0.45 * rows))
    ax = fig.add_subplot()
    cmap = colormaps["viridis"]
    for k, (token, x) in enumerate(zip(tokens, scaled, strict=True)):
        row, col = divmod(k, per_row)
        ax.add_patch(Rectangle((col, rows - 1 - row), 1, 1, color=cmap(x)))
        label = token if len(token) <= 6 else token[:5] + "…"
        ax.text(
            col + 0.5,
            rows - 0.5 - row,
            label.replace("\n", "\\n"),
            ha="center",
            va="center",
            fontsize=8,
            color="black" if x > 0.5 else "white",
        )
    ax.set_xlim(0, min(per_row, len(tokens)))
    ax.set_ylim(0, rows)
    ax.set_axis_off()
    lo, hi = min(values), max(values)
    mappable = ScalarMappable(cmap=cmap, norm=Normalize(lo, hi))
    fig.colorbar(mappable, ax=ax, label="w (higher = earlier)", fraction=0.05)
    ax.set_title("token priorities w(x)")
    if path is not None:
        fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return fig
