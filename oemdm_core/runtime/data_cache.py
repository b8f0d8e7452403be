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
fingerprint, the split and the tokenizer state, and memory-mapped on later runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from oemdm_core.interfaces.data import Dataset, Tokenizer
from oemdm_core.plugin.registry import Registry, resolve_registry

if TYPE_CHECKING:
    from oemdm_core.runtime.experiment import ExperimentConfig

CACHE_ENV = "OEMDM_CACHE"
PROTOCOLS = ("packed", "padded")


def default_cache_dir() -> Path:
    """`$OEMDM_CACHE`, else `~/.cache/oemdm`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "oemdm")


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :20
    ]


def _save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npy", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def fit_tokenizer(dataset: Dataset, tokenizer: Tokenizer, cache_dir: Path | None) -> None:
    """Fit `tokenizer` on the training split (cached by data fingerprint and tokenizer options)."""
    key = None
    if cache_dir is not None:
        key = Path(cache_dir) / (
            "tokenizer-"
            + _digest(
                {
                    "data": dataset.fingerprint(),
                    "tok": tokenizer.name,
                    "opts": tokenizer.get_options(),
                }
            )
            + ".json"
        )
        if key.is_file():
            tokenizer.load_state(json.loads(key.read_text()))
            return
    tokenizer.fit("\n".join(dataset.texts("train")))
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key.name}.", dir=key.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(tokenizer.state(), f)
        os.replace(tmp, key)


def tokenize_split(
    dataset: Dataset,
    tokenizer: Tokenizer,
    split: str,
    cache_dir: Path | None,
    split_lines: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of every document of `split`, concatenated, and document offsets.

    split_lines: treat every non-empty line as a document (sentence-level corpora).

    Returns (tokens `[N]`, offsets `[D + 1]`): document d is tokens[offsets[d]:offsets[d+1]].
    Cached as .npy files and memory-mapped when `cache_dir` is given.
    """
    paths = None
    if cache_dir is not None:
        key = _digest(
            {
                "format": 1,
                "data": dataset.fingerprint(),
                "split": split,
                "lines": split_lines,
                "tok": tokenizer.name,
                "opts": tokenizer.get_options(),
                "state": tokenizer.state(),
            }
        )
        cache_dir = Path(cache_dir)
        paths = cache_dir / f"{key}-tokens.npy", cache_dir / f"{key}-offsets.npy"
        if paths[0].is_file() and paths[1].is_file():
            return np.load(paths[0], mmap_mode="r"), np.load(paths[1])
    dtype = np.uint16 if tokenizer.vocab_size + 1 < 2**16 else np.int32
    texts = dataset.texts(split)
    if split_lines:
        texts = [line for text in texts for line in text.splitlines() if line.strip()]
    pieces = [np.asarray(tokenizer.encode(text), dtype=dtype) for text in texts]
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in pieces])
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
    if paths is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _save_npy(paths[0], tokens)
        _save_npy(paths[1], offsets)
    return tokens, offsets


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
    from oemdm_core.runtime.checkpoints import build_tokenizer

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

    def seqs(split: str) -> Sequences:
        tokens, offsets = tokenize_split(dataset, tokenizer, split, cache_dir, cfg.data.split_lines)
        data = Sequences(tokens, offsets, cfg.data.length, cfg.data.protocol, pad_id or 0)
        if len(data) == 0:
            raise ValueError(
                f"split {split!r} of dataset '{dataset.name}' has {len(tokens)} tokens, fewer "
                f"than one sequence of data.length={cfg.data.length}"
            )
        return data

    train = seqs("train") if "train" in splits else None
    evaluation = seqs(cfg.evaluation.split) if "evaluation" in splits else None
    return Data(tokenizer, vocab, pad_id, train, evaluation)
