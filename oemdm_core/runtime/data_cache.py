"""Tokenized data: a cache of token arrays and the two batching protocols.

Protocols:
- `packed`: every document of a split is encoded and the ids concatenated (documents
  without a separator); the stream is cut into contiguous, non-overlapping chunks of L
  tokens (text8 / OpenWebText style). Every token is real text.
- `padded`: one sequence per document (LM1B style), truncated to L and right-padded with a
  pad id. The pad is an extra vocabulary item (id = tokenizer.vocab_size, so the model's V is
  one larger); the NELBO has no pad-aware term, so pads are modelled, and counted in bits per
  token, like any other token.

Token arrays are written once under a cache directory, keyed by a hash of the data
fingerprint, the split and the tokenizer state, and memory-mapped on later runs
(`oemdm_core.runtime.token_cache`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from oemdm_core.errors import OeMDMWarning
from oemdm_core.plugin.registry import Registry, resolve_registry
from oemdm_core.runtime.token_cache import default_cache_dir, fit_tokenizer, tokenized_split

if TYPE_CHECKING:
    from oemdm_core.runtime.experiment import ExperimentConfig

PROTOCOLS = ("packed", "padded")


@dataclass
class Sequences:
    """A split as a list of fixed-length sequences `[L]` under one protocol."""

    tokens: np.ndarray  # [N] ids
    offsets: np.ndarray  # [D + 1] document boundaries
    length: int
    protocol: str
    pad_id: int  # used by the padded protocol only

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")

    def __len__(self) -> int:
        if self.protocol == "packed":
            return len(self.tokens) // self.length
        return len(self.offsets) - 1

    def get(self, indices: np.ndarray) -> Tensor:
        """Sequences `indices` as a LongTensor `[n, L]`."""
        L = self.length
        if self.protocol == "packed":
            rows = [np.asarray(self.tokens[i * L : (i + 1) * L]) for i in indices]
        else:
            rows = []
            for i in indices:
                doc = np.asarray(self.tokens[self.offsets[i] : self.offsets[i + 1]][:L])
                rows.append(
                    np.pad(doc.astype(np.int64), (0, L - len(doc)), constant_values=self.pad_id)
                )
        return torch.from_numpy(np.stack(rows).astype(np.int64))


@functools.lru_cache(maxsize=4)
def _permutation(num_sequences: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(num_sequences)


def shard_indices(
    num_sequences: int, step: int, global_batch: int, shard: int, shard_size: int, seed: int
) -> np.ndarray:
    """Sequence indices of shard `shard` (size `shard_size`) of the global batch at `step`.

    The stream visits a fresh permutation of all sequences each epoch (seeded by seed and
    epoch), so the batch at a step depends only on (step, seed): resuming needs only `step`.
    """
    start = step * global_batch + shard * shard_size
    g = np.arange(start, start + shard_size, dtype=np.int64)
    epochs, pos = np.divmod(g, num_sequences)
    out = np.empty_like(g)
    for epoch in np.unique(epochs):
        perm = _permutation(num_sequences, seed, int(epoch))
        sel = epochs == epoch
        out[sel] = perm[pos[sel]]
    return out


@dataclass(frozen=True, eq=False)
class EvalBatches(SequenceABC):
    """The first `count` sequences of `data` in order, as batches `[≤ batch_size, L]` read
    from `data` when indexed or iterated: memory does not grow with the number of
    sequences, and the batches can be iterated again (same tensors each time)."""

    data: Sequences
    batch_size: int
    count: int

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def __getitem__(self, i: int) -> Tensor:
        if not -len(self) <= i < len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        start = (i % len(self)) * self.batch_size
        return self.data.get(np.arange(start, min(start + self.batch_size, self.count)))


def eval_batches(data: Sequences, batch_size: int, max_sequences: int | None) -> EvalBatches:
    """The first `max_sequences` sequences of `data` in order, as batches `[≤batch_size, L]`
    (a sequence of batches, each read when it is used)."""
    n = len(data) if max_sequences is None else min(len(data), max_sequences)
    return EvalBatches(data, batch_size, n)


@dataclass
class Data:
    """Tokenizer, model vocabulary and the train / evaluation sequences of an experiment."""

    tokenizer: Any
    vocab_size: int  # the model's V: tokenizer ids (+ 1 pad id under the padded protocol)
    pad_id: int | None
    train: Sequences | None
    evaluation: Sequences | None
    fingerprint: dict[str, Any] | None = None  # source and sha256 of the training split

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i != self.pad_id])


def build_data(
    cfg: ExperimentConfig,
    registry: Registry | None = None,
    tokenizer_rec: dict | None = None,
    splits: tuple[str, ...] = ("train", "evaluation"),
) -> Data:
    """Build the dataset and tokenizer (fitted, or restored from `tokenizer_rec`), tokenize
    the needed splits (cached) and wrap them in the configured protocol."""
    from oemdm_core.runtime.checkpoint.store import build_tokenizer

    registry = resolve_registry(registry)
    dataset = registry.build("dataset", cfg.data.dataset.name, **cfg.data.dataset.options)
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else default_cache_dir()
    if tokenizer_rec is not None:
        tokenizer = build_tokenizer(tokenizer_rec, registry)
    else:
        spec = cfg.data.tokenizer
        tokenizer = registry.build("tokenizer", spec.name, **spec.options)
        fit_tokenizer(dataset, tokenizer, cache_dir)
    padded = cfg.data.protocol == "padded"
    pad_id = tokenizer.vocab_size if padded else None
    vocab = tokenizer.vocab_size + (1 if padded else 0)

    digests: dict[str, str] = {}

    def seqs(split: str) -> Sequences:
        tokens, offsets, digests[split] = tokenized_split(
            dataset, tokenizer, split, cache_dir, cfg.data.split_lines
        )
        data = Sequences(tokens, offsets, cfg.data.length, cfg.data.protocol, pad_id or 0)
        if len(data) == 0:
            raise ValueError(
                f"split {split!r} of dataset '{dataset.name}' has {len(tokens)} tokens, fewer "
                f"than one sequence of data.length={cfg.data.length}"
            )
        if padded:
            check_truncation(split, dataset.name, offsets, cfg.data.length)
        return data

    train = seqs("train") if "train" in splits else None
    evaluation = seqs(cfg.evaluation.split) if "evaluation" in splits else None
    fingerprint = None
    if train is not None:
        fingerprint = {
            "source": dataset.fingerprint(),
            "train_tokens": len(train.tokens),
            "train_sha256": digests["train"],
        }
    return Data(tokenizer, vocab, pad_id, train, evaluation, fingerprint)


def check_truncation(split: str, dataset: str, offsets: np.ndarray, length: int) -> None:
    """Warn when truncating the documents of a padded split to `length` tokens drops more
    than half of its tokens (e.g. one long document trained on as one sequence of L tokens)."""
    sizes = np.diff(np.asarray(offsets))
    total, kept = int(sizes.sum()), int(np.minimum(sizes, length).sum())
    if kept * 2 < total:
        warnings.warn(
            f"data.protocol: 'padded' keeps only {kept} of the {total} tokens of split "
            f"{split!r} of dataset '{dataset}' ({len(sizes)} documents cut to data.length="
            f"{length}); use data.split_lines=true (one document per line), "
            "data.protocol=packed or a longer data.length",
            OeMDMWarning,
            stacklevel=3,
        )
