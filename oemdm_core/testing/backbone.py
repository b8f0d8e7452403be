"""`check_backbone`: a backbone's outputs have the documented shapes, and every capability
it declares (`attention`, `uses_time`, `supports_kv_cache`, `accepts_structured_input`,
`exposes_hidden`, `shard_units`) holds, read from the declared attributes alone."""

from __future__ import annotations

import torch
from torch import Tensor

from oemdm_core.interfaces.backbone import ATTENTION_MODES, Backbone, DenoiserOutput
from oemdm_core.plugin.registry import Registry, resolve_registry
from oemdm_core.testing.common import call, component_label, fail, mismatch, rebuilt

# What a backbone declares; a checkpoint rebuilds it from its options, so they decide all.
DECLARED = (
    "vocab_size",
    "max_length",
    "hidden_size",
    "attention",
    "block_size",
    "uses_time",
    "exposes_hidden",
    "supports_kv_cache",
    "accepts_structured_input",
)


def check_backbone(
    backbone: Backbone,
    *,
    registry: Registry | None = None,
    batch: int = 2,
    length: int | None = None,
    seed: int = 0,
) -> None:
    """Check a built backbone (in eval mode, without gradients; its mode is restored):

    - `forward(tokens [B, L] with the mask id V, t [B])` returns a `DenoiserOutput` with
      finite `logits [B, L, V]`, and `hidden [B, L, hidden_size]` iff `exposes_hidden`
      (else None); an all-mask input too; rows do not depend on each other and a second
      call gives the same output;
    - `attention` is one of `ATTENTION_MODES` and holds: causal, the logits at i do not
      change when tokens ≥ i do; block_causal (with an int `block_size` ≥ 1), they do not
      change when tokens of later blocks do;
    - `uses_time` False: the output is the same for any t, and for t None;
    - `supports_kv_cache`: cached calls (chunked, read-only with `commit=0`, a partial
      commit fused with a read; causal: one call per token with `set_last_token`) give the
      uncached logits;
    - `accepts_structured_input`: `position_ids = 0…L−1` reproduce the plain output, and
      (bidirectional, block_causal) so does the mode's own `attn_mask`; the two-stream input
      [x ; y] with positions [0…L−1, 0…L−1] and a block-diagonal mask gives each half's
      plain output;
    - `shard_units()` are distinct submodules of the backbone (FSDP shards each one).
    - rebuilt from `get_options()` (through `registry`, default the global one), it
      declares the same sizes and capabilities.

    length: L, a multiple of the block size (default: 8, or two blocks, within max_length).
    Raises `ConformanceError`.
    """
    who = component_label(backbone)
    attention, block = backbone.attention, backbone.block_size
    if attention not in ATTENTION_MODES:
        fail(who, f"attention is one of {ATTENTION_MODES}", "the declaration", repr(attention))
    if attention == "block_causal" and (not isinstance(block, int) or block < 1):
        fail(who, "block_causal declares an int block_size >= 1", "the declaration", repr(block))
    units, children = backbone.shard_units(), list(backbone.modules())[1:]
    strays = [u for u in units if not any(u is m for m in children)]
    if strays or len({id(u) for u in units}) != len(units):
        detail = f"{type(strays[0]).__name__} is not one" if strays else "a unit is listed twice"
        fail(
            who, "shard_units() are distinct submodules of the backbone", "the declaration", detail
        )
    step = block if attention == "block_causal" else 1  # cached commits end on blocks
    if length is None:
        length = min(step * max(2, -(-8 // step)), backbone.max_length // step * step)
    if length < 1 or length % step or batch < 2:
        raise ValueError(
            f"check_backbone needs batch >= 2 and a length that is a positive multiple of "
            f"{step}; got batch {batch}, length {length}"
        )
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, backbone.vocab_size + 1, (batch, length), generator=gen)
    x[:, ::3] = backbone.vocab_size  # the mask id, surely present
    y = torch.randint(0, backbone.vocab_size + 1, (batch, length), generator=gen)
    t = torch.rand(batch, generator=gen)
    device = next(backbone.parameters(), torch.empty(0)).device
    x, y, t = x.to(device), y.to(device), t.to(device)
    training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            plain = _check_outputs(who, backbone, x, t)
            _check_attention(who, backbone, x, t, plain, gen)
            if not backbone.uses_time:
                _check_time_free(who, backbone, x, t, plain)
            if backbone.supports_kv_cache:
                _check_cache(who, backbone, x, y, t)
            if backbone.accepts_structured_input:
                _check_structured(who, backbone, x, y, t, plain)
    finally:
        backbone.train(training)
    copy = rebuilt(who, backbone, resolve_registry(registry))
    for name in DECLARED:
        if getattr(copy, name) != getattr(backbone, name):
            where = f"declared {name}"
            detail = f"{getattr(copy, name)!r}, built {getattr(backbone, name)!r}"
            fail(who, "rebuilt from get_options(), the same declarations", where, detail)


def _forward(who: str, backbone: Backbone, prop: str, tokens: Tensor, t, **kw) -> DenoiserOutput:
    out = call(who, prop, backbone, tokens, t, **kw)
    if not isinstance(out, DenoiserOutput):
        fail(who, f"{prop} returns a DenoiserOutput", "the call", f"got {type(out).__name__}")
    return out


def _same(who: str, prop: str, where: str, got: Tensor, expected: Tensor) -> None:
    difference = mismatch(got, expected)
    if difference:
        fail(who, prop, where, difference)


def _check_outputs(who: str, backbone: Backbone, x: Tensor, t: Tensor) -> DenoiserOutput:
    batch, length = x.shape
    vocab, width = backbone.vocab_size, backbone.hidden_size
    all_mask = torch.full_like(x, vocab)
    for name, tokens in (("ids with the mask id", x), ("an all-mask input", all_mask)):
        where = f"tokens {tuple(tokens.shape)} ({name})"
        out = _forward(who, backbone, "forward(tokens, t)", tokens, t)
        logits, hidden = out.logits, out.hidden
        if logits.shape != (batch, length, vocab):
            fail(who, "logits have shape [B, L, V]", where, f"got {tuple(logits.shape)}")
        if not torch.isfinite(logits).all():
            fail(who, "logits are finite", where, f"{int((~torch.isfinite(logits)).sum())} not")
        if backbone.exposes_hidden:
            if hidden is None or hidden.shape != (batch, length, width):
                got = None if hidden is None else tuple(hidden.shape)
                fail(
                    who, "exposes_hidden: hidden has shape [B, L, hidden_size]", where, f"got {got}"
                )
            if not torch.isfinite(hidden).all():
                fail(who, "hidden states are finite", where, "some are not")
        elif hidden is not None:
            fail(who, "exposes_hidden False: hidden is None", where, f"got {tuple(hidden.shape)}")
    plain = _forward(who, backbone, "forward(tokens, t)", x, t)
    _same(
        who,
        "a second call gives the same logits",
        "the same tokens and t",
        plain.logits,
        _logits(who, backbone, x, t),
    )
    row = _forward(who, backbone, "forward(one row)", x[1:2], t[1:2])
    _same(who, "rows are independent", "row 1 alone vs in the batch", row.logits, plain.logits[1:2])
    return plain


def _logits(who: str, backbone: Backbone, x: Tensor, t) -> Tensor:
    return _forward(who, backbone, "forward(tokens, t)", x, t).logits


def _check_attention(who, backbone: Backbone, x, t, plain: DenoiserOutput, gen) -> None:
    length, vocab = x.shape[1], backbone.vocab_size
    if backbone.attention == "causal":
        starts, prop = range(length), "causal: logits at i do not read tokens ≥ i"
    elif backbone.attention == "block_causal":
        starts = range(backbone.block_size, length, backbone.block_size)
        prop = "block_causal: logits do not read later blocks"
    else:
        return
    for start in starts:
        other = x.clone()
        shift = 1 + int(torch.randint(0, vocab, (1,), generator=gen))  # in [1, V]: a change
        other[:, start:] = (x[:, start:] + shift) % (vocab + 1)
        seen = start + 1 if backbone.attention == "causal" else start
        got = _logits(who, backbone, other, t)[:, :seen]
        _same(who, prop, f"tokens from {start} on changed", got, plain.logits[:, :seen])


def _check_time_free(who, backbone: Backbone, x, t, plain: DenoiserOutput) -> None:
    prop = "uses_time False: the output does not depend on t"
    for name, other in (
        ("t = 0", torch.zeros_like(t)),
        ("t = 1", torch.ones_like(t)),
        ("t None", None),
    ):
        _same(
            who, prop, f"{name} vs t = {t.tolist()}", _logits(who, backbone, x, other), plain.logits
        )


def _check_cache(who, backbone: Backbone, x: Tensor, y: Tensor, t: Tensor) -> None:
    batch, length = x.shape
    step = backbone.block_size if backbone.attention == "block_causal" else 1
    first, second = step, min(length, 3 * step)  # chunk edges on block boundaries
    prop = "supports_kv_cache: cached logits equal the uncached ones"

    def cached(tokens, cache, commit=None, where=""):
        out = _forward(
            who, backbone, f"cached forward ({where})", tokens, t, cache=cache, commit=commit
        )
        return out.logits

    def new_cache():
        return call(who, "new_cache(batch, capacity)", backbone.new_cache, batch, length)

    # The whole sequence in three committed chunks: each chunk's logits are those of the
    # uncached prefix up to its end.
    cache = new_cache()
    for lo, hi in ((0, first), (first, second), (second, length)):
        if lo == hi:
            continue
        where = f"positions {lo}…{hi - 1} after {lo} cached"
        got = cached(x[:, lo:hi], cache, where=where)
        _same(who, prop, where, got, _logits(who, backbone, x[:, :hi], t)[:, lo:])
        if cache.length != hi:
            fail(who, "a cached call commits its tokens", where, f"cache.length {cache.length}")
    # A partial commit fused with a read of the rest, then a read-only call (commit=0).
    cache = new_cache()
    cached(x[:, :first], cache, where=f"positions 0…{first - 1}")
    state = torch.cat([x[:, :second], y[:, second:]], dim=1)
    expected = _logits(who, backbone, state, t)
    where = f"positions {first}…{length - 1}, commit {second - first}"
    _same(
        who,
        prop,
        where,
        cached(state[:, first:], cache, second - first, where),
        expected[:, first:],
    )
    if cache.length != second:
        fail(
            who,
            "commit=k appends k positions",
            where,
            f"cache.length {cache.length}, expected {second}",
        )
    if second < length:
        where = f"positions {second}…{length - 1}, commit 0"
        _same(who, prop, where, cached(state[:, second:], cache, 0, where), expected[:, second:])
        if cache.length != second:
            fail(
                who, "commit=0 reads only", where, f"cache.length {cache.length}, expected {second}"
            )
    if backbone.attention == "causal":  # the AR pattern: a placeholder, then the real token
        cache, full = new_cache(), _logits(who, backbone, x, t)
        placeholder = torch.full_like(x[:, :1], backbone.vocab_size)
        for p in range(length):
            where = f"one call per token with set_last_token, position {p}"
            _same(who, prop, where, cached(placeholder, cache, where=where)[:, 0], full[:, p])
            call(who, "cache.set_last_token(tokens [B])", cache.set_last_token, x[:, p])


def _check_structured(who, backbone: Backbone, x: Tensor, y: Tensor, t, plain) -> None:
    length = x.shape[1]
    positions = torch.arange(length, device=x.device)
    prop = "accepts_structured_input: attn_mask / position_ids reproduce the plain output"
    got = _forward(who, backbone, "forward(position_ids=)", x, t, position_ids=positions).logits
    _same(who, prop, "position_ids 0…L−1", got, plain.logits)
    if backbone.attention == "causal":  # the causal input shift makes the 2L layout differ
        return
    own = torch.ones(length, length, dtype=torch.bool, device=x.device)
    if backbone.attention == "block_causal":
        block = positions // backbone.block_size
        own = block[None, :] <= block[:, None]
    got = _forward(
        who, backbone, "forward(attn_mask=)", x, t, attn_mask=own, position_ids=positions
    )
    _same(who, prop, f"the {backbone.attention} mask", got.logits, plain.logits)
    two = torch.block_diag(own, own)  # [2L, 2L]: each stream attends to itself only
    stream = _forward(
        who,
        backbone,
        "forward([x ; y])",
        torch.cat([x, y], 1),
        t,
        attn_mask=two,
        position_ids=torch.cat([positions, positions]),
    ).logits
    _same(who, prop, "two streams [x ; y], first half", stream[:, :length], plain.logits)
    _same(
        who,
        prop,
        "two streams [x ; y], second half",
        stream[:, length:],
        _logits(who, backbone, y, t),
    )


__all__ = ("check_backbone",)
