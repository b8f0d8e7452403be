"""Datasets: `pydoc` (embedded, the default), `text-files` (local files), `hf` (Hugging Face)."""

from __future__ import annotations

import glob
import gzip
import lzma
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from oemdm_core import Dataset, Options
from oemdm_core.interfaces import SPLITS


class SplitOptions(Options):
    """The held-out fractions of a corpus split contiguously (`contiguous_split`)."""

    validation: float = Field(default=0.05, ge=0, lt=1, description="Validation fraction.")
    test: float = Field(default=0.05, ge=0, lt=1, description="Test fraction.")

    @model_validator(mode="after")
    def _leaves_a_training_split(self) -> SplitOptions:
        if self.validation + self.test >= 1:
            raise ValueError(
                f"validation ({self.validation}) and test ({self.test}) fractions must be >= 0 "
                "and sum to < 1"
            )
        return self


def contiguous_split(text: str, split: str, validation: float, test: float) -> str:
    """The `split` part of `text`: train first, then validation, then test (contiguous)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    n = len(text)
    a = int(round(n * (1 - validation - test)))
    b = int(round(n * (1 - test)))
    return {"train": text[:a], "validation": text[a:b], "test": text[b:]}[split]


class Pydoc(Dataset):
    """CPython's reference documentation (`pydoc_data.topics`, ~465K characters), embedded in
    every Python install: the topics joined in sorted key order and split contiguously."""

    name = "pydoc"

    class Options(SplitOptions):
        """The held-out fractions only: the corpus is embedded."""

    options: Options

    def corpus(self) -> str:
        from pydoc_data.topics import topics

        return "\n\n".join(topics[k] for k in sorted(topics))

    def texts(self, split: str) -> list[str]:
        o = self.options
        return [contiguous_split(self.corpus(), split, o.validation, o.test)]

    def fingerprint(self) -> str:
        return f"pydoc python={sys.version_info[0]}.{sys.version_info[1]}"


def read_text_file(path: Path, errors: str) -> str:
    """Decode a plain, .gz or .xz file as UTF-8.

    With errors="strict", undecodable bytes raise `ValueError` naming the file and the byte
    offset (in the decompressed stream); "replace" and "ignore" are passed to the decoder.
    """
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    openers: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".xz": lzma.open}
    opener = openers.get(path.suffix, open)
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, OSError, lzma.LZMAError) as exc:  # truncated or not compressed
        kind = {".gz": "gzip", ".xz": "xz"}.get(path.suffix, "text")
        raise ValueError(
            f"{path}: cannot be read, the {kind} file is truncated or corrupt "
            f"({type(exc).__name__}: {exc})"
        ) from None
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: bytes at offset {exc.start} are not valid UTF-8 ({exc.reason}); "
            "set the dataset option errors='replace' or 'ignore' to decode anyway"
        ) from None


class TextFiles(Dataset):
    """Local UTF-8 text files (plain, .gz or .xz) given as paths or globs, concatenated in
    order and split contiguously into train / validation / test by fraction."""

    name = "text-files"

    class Options(SplitOptions):
        paths: list[str] = Field(
            default_factory=list, validate_default=True, description="Files or glob patterns."
        )
        errors: Literal["strict", "replace", "ignore"] = Field(
            default="strict", description="What to do with undecodable bytes (strict = error)."
        )
        separator: str = Field(default="\n\n", description="Text placed between files.")

        @field_validator("paths")
        @classmethod
        def _some_paths(cls, paths: list[str]) -> list[str]:
            if not paths:
                raise ValueError(
                    "dataset 'text-files' needs paths: --set data.dataset.paths=[a.txt]"
                )
            return paths

    options: Options

    def files(self) -> list[Path]:
        """The matched files, in the order given (globs expanded and sorted)."""
        found: list[Path] = []
        for pattern in self.options.paths:
            pattern = os.path.expanduser(pattern)
            if glob.has_magic(pattern):
                matches = sorted(glob.glob(pattern))
                if not matches:
                    raise FileNotFoundError(f"data glob matched no files: {pattern}")
                found.extend(Path(m) for m in matches)
            else:
                if not Path(pattern).is_file():
                    raise FileNotFoundError(f"data file not found: {pattern}")
                found.append(Path(pattern))
        return found

    def texts(self, split: str) -> list[str]:
        o = self.options
        corpus = o.separator.join(read_text_file(p, o.errors) for p in self.files())
        return [contiguous_split(corpus, split, o.validation, o.test)]

    def fingerprint(self) -> str:
        parts = [f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in self.files()]
        return "text-files " + ";".join(parts)


LOCAL_FORMATS = {".parquet": "parquet", ".arrow": "arrow", ".jsonl": "json", ".json": "json"}


class HFDataset(Dataset):
    """A Hugging Face `datasets` corpus: a name on the Hub and a config (text8, wikitext, lm1b,
    openwebtext …; needs the network on first use, then the `datasets` cache), a local
    directory written by `save_to_disk` (a DatasetDict, or one Dataset served as every split),
    or local Parquet / Arrow / JSON-lines files (a path or glob; they form the dataset's
    'train' split, which `splits` may slice, e.g. validation: 'train[90%:]'). One example
    per document."""

    name = "hf"

    class Options(Options):
        path: str = Field(
            default="",
            validate_default=True,
            description="Dataset name on the Hub, or a local path.",
        )
        config: str | None = Field(
            default=None, description="Dataset config, e.g. wikitext-103-raw-v1."
        )
        text_field: str = Field(default="text", description="Column holding the text.")
        splits: dict[str, str] = Field(
            default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"},
            description="Our split name → the dataset's split name (may slice: 'train[:1%]').",
        )

        @field_validator("path")
        @classmethod
        def _some_path(cls, path: str) -> str:
            if not path:
                raise ValueError("dataset 'hf' needs a path: --set data.dataset.path=wikitext")
            return path

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._loaded: Any = None  # the saved dataset of a local directory, read on first use

    def load(self, split: str) -> Any:
        """The `datasets.Dataset` of our `split` (a local saved dataset dir is loaded from disk)."""
        o = self.options
        if split not in o.splits:
            raise ValueError(
                f"dataset 'hf': split {split!r} not mapped; mapped: {sorted(o.splits)}"
            )
        import datasets

        root = Path(o.path)
        if root.is_dir() and (root / "dataset_dict.json").exists():
            if self._loaded is None:
                self._loaded = datasets.load_from_disk(o.path)
            name = o.splits[split]
            if name not in self._loaded:
                raise ValueError(
                    f"dataset 'hf': {o.path} has no split {name!r}; it has "
                    f"{', '.join(sorted(self._loaded))} (set the dataset option splits)"
                )
            return self._loaded[name]
        if root.is_dir() and (root / "state.json").exists():  # one Dataset: every split
            if self._loaded is None:
                self._loaded = datasets.load_from_disk(o.path)
            return self._loaded
        builder = LOCAL_FORMATS.get(root.suffix)
        if builder is not None and (root.is_file() or glob.has_magic(o.path)):
            try:
                return datasets.load_dataset(builder, data_files=o.path, split=o.splits[split])
            except Exception as exc:
                raise ValueError(
                    f"dataset 'hf': could not read {o.path} as {builder} "
                    f"(split {o.splits[split]!r}): {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}"
                ) from None
        try:
            return datasets.load_dataset(o.path, o.config, split=o.splits[split])
        except Exception as exc:  # offline, unknown name, …: one clear line
            raise ValueError(
                f"dataset 'hf': could not load {o.path!r} (config {o.config!r}, split "
                f"{o.splits[split]!r}); it needs the network on first use or a local dataset "
                f"directory saved with save_to_disk: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None

    def texts(self, split: str) -> list[str]:
        o = self.options
        data = self.load(split)
        if o.text_field not in data.column_names:
            raise ValueError(
                f"dataset 'hf': no column {o.text_field!r}; columns: {data.column_names}"
            )
        return list(data[o.text_field])

    def fingerprint(self) -> str:
        o = self.options
        data = self.load("train")
        return f"hf {o.path} {o.config} {o.splits} {getattr(data, '_fingerprint', '')}"
