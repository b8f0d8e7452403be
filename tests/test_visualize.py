"""Order heatmaps, token-priority images and examples/inspect_order.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib.image
import pytest
import torch
from matplotlib.figure import Figure

from oemdm_core.runtime.visualize import (
    order_heatmap,
    order_matrix,
    token_priority_html,
    token_priority_png,
)

ROOT = Path(__file__).resolve().parents[1]


def assert_nontrivial_png(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50
    assert float(pixels[..., :3].std()) > 0.05  # not a blank image


def test_order_matrix_counts_steps_per_position():
    order = torch.tensor([[0, 2, 1, -1], [1, 0, 2, -1]])
    expected = torch.tensor([[0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5], [0, 0, 0]])
    torch.testing.assert_close(order_matrix(order), expected)
    torch.testing.assert_close(order_matrix(torch.tensor([1, 0])), torch.tensor([[0, 1.0], [1, 0]]))
    with pytest.raises(ValueError, match=r"\[L\] or \[N, L\]"):
        order_matrix(torch.zeros(2, 2, 2, dtype=torch.long))


def test_heatmap_and_priority_images(tmp_path):
    order = torch.stack(
        [torch.randperm(12, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    )
    fig = order_heatmap(order, tmp_path / "order.png")
    assert isinstance(fig, Figure)
    assert_nontrivial_png(tmp_path / "order.png")
    tokens = ["The", " cat", " sat", " <on>", " the", " mat", "."]
    w = torch.tensor([1.2, 0.3, 0.5, 0.9, 0.1, 1.0, 0.7])
    fig = token_priority_png(tokens, w, tmp_path / "priority.png")
    assert isinstance(fig, Figure)
    assert_nontrivial_png(tmp_path / "priority.png")
    page = token_priority_html(tokens, w, tmp_path / "priority.html")
    assert (tmp_path / "priority.html").read_text() == page
    assert "&lt;on&gt;" in page and page.count("<span") == len(tokens)
    assert 'title="w=1.200"' in page and "rgb(253,231,36)" in page  # the top token is yellow
    with pytest.raises(ValueError, match="one priority per token"):
        token_priority_html(tokens, w[:3])


def test_inspect_order_example_writes_both_images(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "inspect_order", ROOT / "examples/inspect_order.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ["--out", str(tmp_path), "--samples", "4", "--steps", "4", "--length", "8"]
    assert module.main(args) == 0
    for name in ("order.png", "priority.png"):
        assert_nontrivial_png(tmp_path / name)
    assert (tmp_path / "priority.html").read_text().count("<span") == 8
    assert "w range" in capsys.readouterr().out
