"""Built-in datasets (`pydoc`, `text-files`, `hf`) and tokenizers (`char`, `byte`, `bpe`, `hf`)."""

from __future__ import annotations

from oemdm_core import Register, hookimpl
from oemdm_data.datasets import HFDataset, Pydoc, TextFiles
from oemdm_data.tokenizers import BPETokenizer, ByteTokenizer, CharTokenizer, HFTokenizer

__all__ = [
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "HFDataset",
    "HFTokenizer",
    "Pydoc",
    "TextFiles",
]


@hookimpl
def register_datasets(register: Register) -> None:
    register(Pydoc)
    register(TextFiles)
    register(HFDataset)


@hookimpl
def register_tokenizers(register: Register) -> None:
    register(CharTokenizer)
    register(ByteTokenizer)
    register(BPETokenizer)
    register(HFTokenizer)
