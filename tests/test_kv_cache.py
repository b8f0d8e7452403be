"""The transformer's KV cache gives the same logits as the uncached forward."""

from __future__ import annotations

import pytest
import torch
from oemdm_transformer.model import Transformer

V, L = 5, 12


def backbone(attention: str, block_size: int = 1, **kw) -> Transformer:
    torch.manual_seed(0)
    return Transformer(
        preset="tiny",
        vocab_size=V,
        max_length=16,
        attention=attention,
        block_size=block_size,
        **kw,
    ).eval()


def tokens(batch: int = 3, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V + 1, (batch, L), generator=g)  # masks included


@pytest.mark.parametrize("chunks", [[1] * L, [3, 4, 5], [L], [5, 1, 1, 5], [2] * 6])
def test_causal_cache_matches_uncached(chunks):
    net, x = backbone("causal"), tokens()
    with torch.no_grad():
        full = net(x).logits
        cache = net.new_cache(x.shape[0])
        pieces, start = [], 0
        for n in chunks:
            pieces.append(net(x[:, start : start + n], cache=cache).logits)
            start += n
    assert cache.length == L
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_causal_one_call_per_token_with_set_last_token():
    """AR pattern: query position p with a placeholder, then set the real token."""
    net, x = backbone("causal"), tokens()
    with torch.no_grad():
        full = net(x).logits
        cache = net.new_cache(x.shape[0])
        for p in range(L):
            placeholder = torch.full((x.shape[0], 1), V)
            logits = net(placeholder, cache=cache).logits[:, 0]
            torch.testing.assert_close(logits, full[:, p], atol=1e-5, rtol=1e-5)
            cache.set_last_token(x[:, p])


def test_causal_partial_commit_and_read_only():
    net, x = backbone("causal"), tokens()
    with torch.no_grad():
        full = net(x).logits
        cache = net.new_cache(x.shape[0])
        net(x[:, :5], cache=cache, commit=3)
        assert cache.length == 3
        read = net(x[:, 3:8], cache=cache, commit=0).logits
        assert cache.length == 3
        rest = net(x[:, 3:], cache=cache).logits
    torch.testing.assert_close(read, full[:, 3:8], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rest, full[:, 3:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block_size", [1, 3, 4])
def test_block_causal_cache_matches_uncached(block_size):
    """Each block is queried while noisy (read only), then committed clean."""
    net = backbone("block_causal", block_size)
    clean = tokens(seed=2).clamp(max=V - 1)
    noisy = tokens(seed=3)
    with torch.no_grad():
        cache = net.new_cache(clean.shape[0])
        for lo in range(0, L, block_size):
            hi = lo + block_size
            state = torch.cat([clean[:, :lo], noisy[:, lo:]], dim=1)
            expected = net(state).logits[:, lo:hi]
            got = net(noisy[:, lo:hi], cache=cache, commit=0).logits
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
            net(clean[:, lo:hi], cache=cache)
        assert cache.length == L
        # Whole blocks of several at once, and commit-one-block-and-query-the-next fused.
        cache = net.new_cache(clean.shape[0])
        net(clean[:, : 2 * block_size], cache=cache)
        fused = torch.cat(
            [clean[:, 2 * block_size : 3 * block_size], noisy[:, 3 * block_size :]], 1
        )
        got = net(fused, cache=cache, commit=block_size).logits
        state = torch.cat([clean[:, : 3 * block_size], noisy[:, 3 * block_size :]], dim=1)
        torch.testing.assert_close(
            got, net(state).logits[:, 2 * block_size :], atol=1e-5, rtol=1e-5
        )
        assert cache.length == 3 * block_size


def test_time_conditioned_cache_matches_at_equal_times():
    net, x = backbone("causal", time_conditioning=True), tokens()
    t = torch.tensor([0.2, 0.5, 0.9])
    with torch.no_grad():
        full = net(x, t).logits
        cache = net.new_cache(x.shape[0])
        got = torch.cat(
            [net(x[:, :7], t, cache=cache).logits, net(x[:, 7:], t, cache=cache).logits], 1
        )
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)


def test_uncached_forward_keywords_still_work():
    net, x = backbone("block_causal", 4), tokens()
    with torch.no_grad():
        mask = torch.ones(L, L, dtype=torch.bool)
        out = net(x, attn_mask=mask, position_ids=torch.arange(L))
    assert out.logits.shape == (3, L, V)


def test_supports_kv_cache_and_errors():
    assert backbone("causal").supports_kv_cache
    assert backbone("block_causal", 4).supports_kv_cache
    bidirectional = backbone("bidirectional")
    assert not bidirectional.supports_kv_cache
    with pytest.raises(ValueError, match="bidirectional"):
        bidirectional.new_cache(2)
    net = backbone("block_causal", 4)
    cache = net.new_cache(3)
    with pytest.raises(ValueError, match="block boundary"):
        net(tokens()[:, :3], cache=cache)
    with pytest.raises(ValueError, match="commit"):
        net(tokens()[:, :4], cache=cache, commit=5)
    with pytest.raises(ValueError, match="batch"):
        net(tokens(batch=2)[:, :4], cache=cache)
    with pytest.raises(ValueError, match="cannot add"):
        net(torch.zeros(3, 17, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="attn_mask"):
        net(tokens()[:, :4], cache=cache, attn_mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="causal"):
        cache.set_last_token(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="cache made for"):
        backbone("causal")(tokens()[:, :4], cache=cache)
