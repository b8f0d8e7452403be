"""Tokenizers: `char` (vocabulary fitted on the training split), `byte`, `hf` (tokenizer.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from oemdm_core import Options, Tokenizer

UNKNOWN = "\ufffd"  # rendered for ids of characters unseen in training


class CharTokenizer(Tokenizer):
    """One id per character seen in the training split, plus one id for unseen characters.

    The vocabulary is the sorted set of training characters; id `len(chars)` stands for any
    character not seen in training (decoded as U+FFFD). The fitted vocabulary is saved with
    every checkpoint (`state()`), so a model always decodes with the characters it learned.
    """

    name = "char"

    class Options(Options):
        unknown: bool = Field(
            default=True,
            description="Reserve one id for characters unseen in training (else they are errors).",
        )

    def __init__(self, unknown: bool = True) -> None:
        self.unknown = unknown
        self.chars: list[str] = []
        self._index: dict[str, int] = {}

    @property
    def vocab_size(self) -> int:
        if not self.chars:
            raise ValueError("char tokenizer has no vocabulary yet: call fit(text) or load_state")
        return len(self.chars) + (1 if self.unknown else 0)

    def fit(self, text: str) -> None:
        if not text:
            raise ValueError("char tokenizer: cannot fit a vocabulary on empty text")
        self.load_state({"chars": sorted(set(text))})

    def state(self) -> dict[str, Any]:
        return {"chars": list(self.chars)}

    def load_state(self, state: dict[str, Any]) -> None:
        chars = state.get("chars")
        if not isinstance(chars, list) or not all(
            isinstance(c, str) and len(c) == 1 for c in chars
        ):
            raise ValueError("char tokenizer state must hold 'chars', a list of single characters")
        self.chars = list(chars)
        self._index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> list[int]:
        self.vocab_size  # noqa: B018 - raises if not fitted
        index, unk = self._index, len(self.chars)
        if self.unknown:
            return [index.get(c, unk) for c in text]
        try:
            return [index[c] for c in text]
        except KeyError as exc:
            raise ValueError(
                f"char tokenizer: character {exc.args[0]!r} was not seen in training "
                "(set tokenizer.unknown=true to map unseen characters to one id)"
            ) from None

    def decode(self, ids: list[int]) -> str:
        chars = self.chars
        return "".join(chars[i] if 0 <= i < len(chars) else UNKNOWN for i in ids)


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes, 256 ids; decoding replaces invalid byte sequences with U+FFFD."""

    name = "byte"

    @property
    def vocab_size(self) -> int:
        return 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


class HFTokenizer(Tokenizer):
    """A local Hugging Face `tokenizer.json`, read with the `tokenizers` package."""

    name = "hf"

    class Options(Options):
        path: str = Field(default="", description="Path of a local tokenizer.json file.")

    def __init__(self, path: str = "") -> None:
        self.path = path
        if not path:
            raise ValueError(
                "tokenizer 'hf' needs a path: --set data.tokenizer.path=tokenizer.json"
            )
        if not Path(path).is_file():
            raise FileNotFoundError(f"tokenizer 'hf': no tokenizer file at {path}")
        try:
            from tokenizers import Tokenizer as _HF
        except ImportError:
            raise ImportError(
                "tokenizer 'hf' needs the `tokenizers` package: pip install tokenizers"
            ) from None
        self._tok = _HF.from_file(path)

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text).ids)

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids))

    def state(self) -> dict[str, Any]:
        return {"tokenizer_json": self._tok.to_str()}
