"""Hypothesis strategies for property tests of schedules, orders and samplers: times with
their edges, batch sizes, lengths, vocabulary sizes and token batches."""

from __future__ import annotations

import torch

try:  # hypothesis is a test dependency; the checks work without it.
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    st = None  # type: ignore[assignment]

EDGE_EPS = (0.0, 1e-12, 1e-9, 1e-6)  # offsets around edges and the ends of [0, 1]


def _require_hypothesis() -> None:
    if st is None:  # pragma: no cover
        raise ImportError("oemdm_core.testing strategies need hypothesis: pip install hypothesis")


def edge_times(length: int = 0) -> list[float]:
    """0, 1, values next to them, and the window edges k/length (and their neighbours)."""
    points = {0.0, 1.0}
    for eps in EDGE_EPS[1:]:
        points |= {eps, 1.0 - eps}
    for k in range(1, length):
        edge = k / length
        points |= {edge, edge - 1e-9, edge + 1e-9}
    return sorted(points)


def times(length: int = 0):
    """Strategy of times in [0, 1]: uniform floats, plus 0, 1, values next to them and the
    window edges k/length of block orders over `length` positions."""
    _require_hypothesis()
    return st.one_of(
        st.sampled_from(edge_times(length)),
        # Subnormal times are excluded: a velocity like 1/t overflows there by design.
        st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_subnormal=False),
    )


def time_pairs(length: int = 0):
    """Strategy of pairs (s, t) with 0 ≤ s ≤ t ≤ 1 (a reverse step t → s)."""
    return st.tuples(times(length), times(length)).map(lambda p: (min(p), max(p)))


def batch_sizes(max_size: int = 4):
    """Strategy of batch sizes B in [1, max_size]."""
    _require_hypothesis()
    return st.integers(min_value=1, max_value=max_size)


def lengths(max_length: int = 8, multiple_of: int = 1):
    """Strategy of sequence lengths L ≤ max_length that are multiples of `multiple_of`."""
    _require_hypothesis()
    return st.integers(min_value=1, max_value=max_length // multiple_of).map(
        lambda n: n * multiple_of
    )


def vocab_sizes(max_size: int = 8):
    """Strategy of vocabulary sizes V in [1, max_size] (the mask is id V)."""
    _require_hypothesis()
    return st.integers(min_value=1, max_value=max_size)


def token_batches(vocab_size: int, length: int, max_batch: int = 4, with_mask: bool = False):
    """Strategy of LongTensor `[B, L]` ids in [0, V) (or [0, V] with the mask id V)."""
    _require_hypothesis()
    high = vocab_size + (1 if with_mask else 0) - 1
    return batch_sizes(max_batch).flatmap(
        lambda b: st.lists(
            st.lists(st.integers(0, high), min_size=length, max_size=length),
            min_size=b,
            max_size=b,
        ).map(lambda rows: torch.tensor(rows, dtype=torch.long))
    )


__all__ = (
    "batch_sizes",
    "edge_times",
    "lengths",
    "time_pairs",
    "times",
    "token_batches",
    "vocab_sizes",
)
