"""Interfaces of text datasets and tokenizers (implementations live in plugins)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from oemdm_core.plugin.component import Component

SPLITS = ("train", "validation", "test")


class Tokenizer(Component, ABC):
    """Text ↔ ids in [0, vocab_size). Tokenizers fitted on data (e.g. `char`) save their state."""

    kind = "tokenizer"

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of token ids."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids of `text`."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """Text of `ids`."""

    def fit(self, text: str) -> None:  # noqa: B027 - optional hook
        """Build the vocabulary from training text (no-op for fixed vocabularies)."""

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state needed to rebuild the fitted tokenizer."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what `state` returned."""

    def unrepresentable(self, text: str) -> dict[str, int]:
        """Characters of `text` that the tokenizer cannot represent, with their counts.

        A character counts when encoding it alone fails or does not decode back to it (it
        would be mapped to an unknown id, normalised away or changed). Whitespace that
        decodes to nothing (a separator for word-level tokenizers) does not count. Tokenizers
        with a cheaper exact test override this; byte-level ones return {}.
        """
        from collections import Counter

        bad: dict[str, int] = {}
        for char, count in Counter(text).items():
            try:
                ids = self.encode(char)
            except ValueError:
                bad[char] = count
                continue
            shown = self.decode(ids)
            if shown != char and not (char.isspace() and shown == ""):
                bad[char] = count
        return bad


class Dataset(Component, ABC):
    """A text corpus with train / validation / test splits."""

    kind = "dataset"

    @abstractmethod
    def texts(self, split: str) -> list[str]:
        """The documents of `split` (one of `SPLITS`); contiguous corpora return one string."""

    def fingerprint(self) -> str:
        """A string that changes when the data change (keys the tokenized-data cache).

        Default: the name and options; datasets reading files add sizes and mtimes."""
        return f"{self.name} {sorted(self.get_options().items())}"
