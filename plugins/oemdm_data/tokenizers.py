"""Tokenizers: `char` (vocabulary fitted on the training split), `byte`, `bpe` (subwords
trained on the training split with the `tokenizers` library) and `hf` (a local tokenizer.json)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import Field, field_validator, model_validator

import oemdm_core
from oemdm_core import Options, Tokenizer

UNKNOWN = "\ufffd"  # rendered for ids of characters unseen in training


class CharTokenizer(Tokenizer):
    """One id per character seen in the training split, plus one id for unseen characters.

    The vocabulary is the sorted set of training characters; id `len(chars)` stands for any
    character not seen in training (decoded as U+FFFD). The fitted vocabulary is saved with
    every checkpoint (`state()`), so a model always decodes with the characters it learned.
    """

    name = "char"

    class Options(oemdm_core.Options):
        unknown: bool = Field(
            default=True,
            description="Reserve one id for characters unseen in training (else they are errors).",
        )

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.chars: list[str] = []  # the fitted vocabulary (`fit`, `load_state`)
        self._index: dict[str, int] = {}

    @property
    def vocab_size(self) -> int:
        if not self.chars:
            raise ValueError("char tokenizer has no vocabulary yet: call fit(text) or load_state")
        return len(self.chars) + (1 if self.options.unknown else 0)

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
        if self.options.unknown:
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

    def unrepresentable(self, text: str) -> dict[str, int]:
        from collections import Counter

        self.vocab_size  # noqa: B018 - raises if not fitted
        return {c: n for c, n in Counter(text).items() if c not in self._index}


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

    def unrepresentable(self, text: str) -> dict[str, int]:
        return {}  # every string is a byte sequence


def _tokenizers_lib(component: str) -> ModuleType:
    try:
        import tokenizers
    except ImportError:
        raise ImportError(
            f"tokenizer '{component}' needs the `tokenizers` package: pip install tokenizers"
        ) from None
    return tokenizers


class BPETokenizer(Tokenizer):
    """Byte-pair encoding trained on the training split with the `tokenizers` library.

    byte_level=True (default, GPT-2 style): merges over UTF-8 bytes, so every string is
    representable and decodes back exactly; the vocabulary holds at least the 256 bytes.
    byte_level=False: merges over the characters seen in training, plus one unknown id
    (decoded as U+FFFD) for unseen characters. Words are split before merging at whitespace
    (GPT-2's pre-tokenisation), so merges never cross a word boundary. The trained vocabulary
    is `state()` (the tokenizer.json text): `oemdm train` caches it beside the token cache,
    keyed by the data fingerprint and these options, and saves it with every checkpoint.
    `vocab_size` is a target: a small corpus may yield fewer merges.
    """

    name = "bpe"

    class Options(oemdm_core.Options):
        vocab_size: int = Field(
            default=1024, ge=2, le=2**20, description="Target vocabulary size (ids)."
        )
        byte_level: bool = Field(
            default=True,
            description="Merge UTF-8 bytes (every string representable) instead of characters.",
        )
        min_frequency: int = Field(
            default=2, ge=1, description="Minimum count of a pair to be merged."
        )

        @model_validator(mode="after")
        def _room_for_the_bytes(self) -> BPETokenizer.Options:
            if self.byte_level and self.vocab_size < 256:
                raise ValueError(
                    f"tokenizer 'bpe': vocab_size {self.vocab_size} is below the 256 byte ids "
                    "of a byte-level BPE; use vocab_size >= 256 or byte_level=false"
                )
            return self

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._tok: Any = None  # the trained `tokenizers.Tokenizer` (`fit`, `load_state`)

    @property
    def vocab_size(self) -> int:
        if self._tok is None:
            raise ValueError("bpe tokenizer has no vocabulary yet: call fit(text) or load_state")
        return int(self._tok.get_vocab_size())

    def fit(self, text: str) -> None:
        if not text:
            raise ValueError("bpe tokenizer: cannot train a vocabulary on empty text")
        lib = _tokenizers_lib(self.name)
        from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

        opts = self.options
        if opts.byte_level:
            tok = lib.Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            extra: dict[str, Any] = {"initial_alphabet": pre_tokenizers.ByteLevel.alphabet()}
        else:
            tok = lib.Tokenizer(models.BPE(unk_token=UNKNOWN))
            tok.pre_tokenizer = pre_tokenizers.Split(Regex(r" ?[^\s]+|\s+"), "isolated")
            tok.decoder = decoders.Fuse()
            extra = {"special_tokens": [UNKNOWN]}
        trainer = trainers.BpeTrainer(
            vocab_size=opts.vocab_size,
            min_frequency=opts.min_frequency,
            show_progress=False,
            **extra,
        )
        # Train on pieces of ~1 MB: `tokenizers` counts words per piece, in parallel.
        piece = 1 << 20
        pieces = (text[i : i + piece] for i in range(0, len(text), piece))
        tok.train_from_iterator(pieces, trainer)
        self._tok = tok

    def state(self) -> dict[str, Any]:
        return {} if self._tok is None else {"tokenizer_json": self._tok.to_str()}

    def load_state(self, state: dict[str, Any]) -> None:
        text = state.get("tokenizer_json")
        if not isinstance(text, str):
            raise ValueError("bpe tokenizer state must hold 'tokenizer_json', a string")
        self._tok = _tokenizers_lib(self.name).Tokenizer.from_str(text)

    def encode(self, text: str) -> list[int]:
        self.vocab_size  # noqa: B018 - raises if not fitted
        return list(self._tok.encode(text).ids)

    def decode(self, ids: list[int]) -> str:
        self.vocab_size  # noqa: B018 - raises if not fitted
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def unrepresentable(self, text: str) -> dict[str, int]:
        return {} if self.options.byte_level else super().unrepresentable(text)


class HFTokenizer(Tokenizer):
    """A local Hugging Face `tokenizer.json` (GPT-2, BERT, …), read with `tokenizers`.

    Special tokens the file defines (e.g. BERT's [CLS]/[SEP]) are added as its post-processor
    says; decoding drops them. The file's text is the tokenizer's `state()`, so a checkpoint
    carries it and decodes the same way even if the file later changes.
    """

    name = "hf"

    class Options(oemdm_core.Options):
        path: str = Field(
            default="", validate_default=True, description="Path of a local tokenizer.json file."
        )

        @field_validator("path")
        @classmethod
        def _some_path(cls, path: str) -> str:
            if not path:
                raise ValueError(
                    "tokenizer 'hf' needs a path: --set data.tokenizer.path=tokenizer.json"
                )
            return path

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        path = self.options.path
        if not Path(path).is_file():
            raise FileNotFoundError(f"tokenizer 'hf': no tokenizer file at {path}")
        lib = _tokenizers_lib(self.name)
        try:
            self._tok = lib.Tokenizer.from_file(path)
        except Exception as exc:  # the Rust error is one line: say which file and what is expected
            raise ValueError(
                f"tokenizer 'hf': {path} is not a tokenizer.json the `tokenizers` library can "
                f"read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
            ) from None

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text).ids)

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids))

    def state(self) -> dict[str, Any]:
        return {"tokenizer_json": self._tok.to_str()}

    def load_state(self, state: dict[str, Any]) -> None:
        text = state.get("tokenizer_json")
        if text is not None:
            self._tok = _tokenizers_lib(self.name).Tokenizer.from_str(text)
