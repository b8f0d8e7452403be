"""The `transformer` backbone: shapes, the mask is never predicted, attention modes, time
conditioning and presets."""

from __future__ import annotations

import math

import pytest
import torch

from oemdm_core import ConfigError, OeMDM, registry

V, L = 5, 8


def build(**options):
    torch.manual_seed(0)
    options = {"preset": "tiny", "vocab_size": V, "max_length": L, **options}
    return registry.build("backbone", "transformer", **options).eval()


def tokens(batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V + 1, (batch, L), generator=g)  # id V is the mask


@pytest.mark.parametrize("attention", ["bidirectional", "causal", "block_causal"])
def test_shapes_and_never_the_mask(attention):
    net = build(attention=attention, block_size=2)
    out = net(tokens(), torch.full((3,), 0.5))
    assert out.logits.shape == (3, L, V)  # V clean tokens: no column for the mask
    assert out.hidden.shape == (3, L, net.hidden_size) and net.hidden_size == 32
    assert torch.isfinite(out.logits).all()
    assert int(out.logits.argmax(-1).max()) < V
    assert net.uses_time is False and net.attention == attention


def changed_positions(net, position: int) -> torch.Tensor:
    """Which output positions change when the token at `position` changes: `[L]` bool."""
    x = tokens(2)
    y = x.clone()
    y[:, position] = (y[:, position] + 1) % (V + 1)
    with torch.no_grad():
        a, b = net(x).logits, net(y).logits
    return ((a - b).abs() > 1e-6).any(-1).any(0)


@pytest.mark.parametrize("position", [0, 3, 7])
def test_causal_logits_at_i_ignore_tokens_from_i_on(position):
    changed = changed_positions(build(attention="causal"), position)
    assert not changed[: position + 1].any()  # logits at i ≤ position see only tokens < i
    assert changed[position + 1 :].all()


@pytest.mark.parametrize("position", [0, 3, 6])
def test_block_causal_ignores_later_blocks(position):
    size = 2
    changed = changed_positions(build(attention="block_causal", block_size=size), position)
    block_start = (position // size) * size
    assert not changed[:block_start].any()  # earlier blocks never see it
    assert changed[block_start:].all()  # its own and later blocks do


def test_bidirectional_sees_everything():
    assert changed_positions(build(), 4).all()


def test_time_conditioning_off_and_on():
    x = tokens()
    plain = build()
    with torch.no_grad():
        a = plain(x, torch.full((3,), 0.1)).logits
        b = plain(x, torch.full((3,), 0.9)).logits
        c = plain(x).logits
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    timed = build(time_conditioning=True)
    assert timed.uses_time
    with torch.no_grad():
        a = timed(x, torch.full((3,), 0.1)).logits
        b = timed(x, torch.full((3,), 0.9)).logits
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="time-conditioned"):
        timed(x)


@pytest.mark.parametrize(
    ("preset", "d_model", "n_layers", "n_heads"),
    [("tiny", 32, 2, 2), ("small", 256, 4, 4), ("base", 768, 12, 12)],
)
def test_presets(preset, d_model, n_layers, n_heads):
    with torch.device("meta"):  # shapes only: no memory for the base preset's weights
        net = registry.build("backbone", "transformer", preset=preset, vocab_size=V)
    assert (net.d_model, net.n_layers, net.n_heads) == (d_model, n_layers, n_heads)
    assert len(net.blocks) == n_layers and net.head.weight.shape == (V, d_model)
    assert net.embed.weight.shape == (V + 1, d_model)  # + the mask token


def test_overrides_and_invalid_sizes():
    net = build(d_model=48, n_heads=4, n_layers=1)
    assert (net.d_model, net.n_heads, len(net.blocks)) == (48, 4, 1)
    with pytest.raises(ValueError, match="heads of even size"):
        build(d_model=40, n_heads=8)  # head size 5 is odd: RoPE needs pairs
    with pytest.raises(ConfigError, match=r"backbone\[transformer\]\.attention"):
        build(attention="sideways")
    with pytest.raises(ValueError, match="exceeds max_length"):
        build()(torch.zeros(1, L + 1, dtype=torch.long))


# -- training health at initialisation --------------------------------------------------------
@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
@pytest.mark.parametrize(
    ("attention", "order"),
    [
        ({"attention": "bidirectional"}, {"name": "mdm"}),
        ({"attention": "bidirectional"}, {"name": "lomdm"}),
        ({"attention": "causal"}, {"name": "ar"}),
        ({"attention": "block_causal", "block_size": 4}, {"name": "block", "block_size": 4}),
    ],
    ids=["bidirectional-mdm", "bidirectional-lomdm", "causal-ar", "block_causal-block"],
)
def test_gradient_norm_at_initialisation_is_moderate(preset, attention, order):
    """Measured as the trainer does (loss = mean NELBO / L, the total norm that
    `clip_grad_norm_` sees). A zero-initialised BOS vector gave 1.6e11 (preset small, causal):
    LayerNorm of an all-zero row has a gradient of order 1/sqrt(eps)."""
    length = 16
    torch.manual_seed(0)
    model = OeMDM.from_config(
        {
            "vocab_size": 64,
            "length": length,
            "backbone": {"name": "transformer", "preset": preset, **attention},
            "order": order,
            "schedule": {"name": "linear"},
            "estimator": {"name": "auto"},
        }
    )
    x = torch.randint(0, 64, (2, length), generator=torch.Generator().manual_seed(0))
    loss = model.nelbo(x, generator=torch.Generator().manual_seed(1)).total.mean() / length
    loss.backward()
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf")))
    assert math.isfinite(norm) and norm < 100, norm
