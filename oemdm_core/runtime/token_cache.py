"""The tokenized-data cache: fitted tokenizer states and token arrays written once under a
cache directory, keyed by a hash of the data fingerprint, the split and the tokenizer state,
and memory-mapped on later runs. Every entry is stored with its sha256 and used only if it
still matches: a corrupt, truncated or edited entry is rebuilt, with a warning naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from oemdm_core.errors import OeMDMWarning
from oemdm_core.files import atomic_file, write_text
from oemdm_core.interfaces.data import Dataset, Tokenizer

CACHE_ENV = "OEMDM_CACHE"


def default_cache_dir() -> Path:
    """`$OEMDM_CACHE`, else `~/.cache/oemdm`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "oemdm")


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :20
    ]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, json.dumps(data))


def _stale(path: Path, why: str) -> None:
    warnings.warn(f"cache entry {path} {why}; rebuilding it", OeMDMWarning, stacklevel=3)


def array_digest(*arrays: np.ndarray) -> str:
    """sha256 of the arrays' dtypes, shapes and contents (one pass over each)."""
    h = hashlib.sha256()
    for array in arrays:
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(np.ascontiguousarray(array).data.cast("B"))
    return h.hexdigest()


def fit_tokenizer(dataset: Dataset, tokenizer: Tokenizer, cache_dir: Path | None) -> None:
    """Fit `tokenizer` on the training split (cached by data fingerprint and tokenizer
    options; the cached state is used only if it matches the sha256 stored with it)."""
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
            try:
                entry = json.loads(key.read_text())
                ok = isinstance(entry, dict) and entry.get("sha256") == _digest(entry["state"])
            except (ValueError, KeyError, TypeError):
                ok = False
            if ok:
                tokenizer.load_state(entry["state"])
                return
            _stale(key, "is corrupt or was modified (its sha256 does not match)")
    tokenizer.fit("\n".join(dataset.texts("train")))
    if key is not None:
        state = tokenizer.state()
        _write_json(key, {"state": state, "sha256": _digest(state)})


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
    tokens, offsets, _ = tokenized_split(dataset, tokenizer, split, cache_dir, split_lines)
    return tokens, offsets


def tokenized_split(
    dataset: Dataset,
    tokenizer: Tokenizer,
    split: str,
    cache_dir: Path | None,
    split_lines: bool = False,
) -> tuple[np.ndarray, np.ndarray, str]:
    """`tokenize_split` plus the `array_digest` of (tokens, offsets). A cache entry is used
    only if its digest matches the one stored beside it (`<key>-sha256.json`); a corrupt,
    truncated or edited entry is rebuilt with a warning naming it."""
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
        stored = cache_dir / f"{key}-sha256.json"
        if paths[0].is_file() and paths[1].is_file():
            cached = _load_verified(paths, stored)
            if cached is not None:
                return cached
    dtype = np.uint16 if tokenizer.vocab_size + 1 < 2**16 else np.int32
    texts = dataset.texts(split)
    if split_lines:
        texts = [line for text in texts for line in text.splitlines() if line.strip()]
    pieces = [np.asarray(tokenizer.encode(text), dtype=dtype) for text in texts]
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in pieces])
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
    digest = array_digest(tokens, offsets)
    if paths is not None and cache_dir is not None:  # both set, or neither
        cache_dir.mkdir(parents=True, exist_ok=True)
        _save_npy(paths[0], tokens)
        _save_npy(paths[1], offsets)
        _write_json(stored, {"sha256": digest})
    return tokens, offsets, digest


def _load_verified(
    paths: tuple[Path, Path], stored: Path
) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The cached (tokens, offsets, digest), or None (with a warning) if the entry is
    unreadable or does not match its stored digest."""
    try:
        expected = json.loads(stored.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        _stale(paths[0], f"has no valid checksum file {stored.name}")
        return None
    try:
        tokens, offsets = np.load(paths[0], mmap_mode="r"), np.load(paths[1])
    except (OSError, ValueError, EOFError) as exc:
        _stale(paths[0], f"cannot be read ({' '.join(str(exc).split())[:120]})")
        return None
    digest = array_digest(tokens, offsets)
    if digest != expected:
        _stale(paths[0], "is corrupt or was modified (its sha256 does not match)")
        return None
    return tokens, offsets, digest
