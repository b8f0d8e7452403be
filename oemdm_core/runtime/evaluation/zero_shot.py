"""Zero-shot evaluation: one checkpoint on several datasets, through its own tokenizer.

`--data` specs (`parse_data_spec`):

- `NAME` or `NAME:{OPTIONS}`: any registered dataset, options as a YAML mapping, e.g.
  `pydoc`, `text-files:{paths: [a.txt, b.txt], test: 0.1}`, `hf:{path: ./saved}`;
- `PATH`: a text file (plain, .gz, .xz) or a Parquet / Arrow / JSON-lines file, evaluated
  whole, or a directory written by `datasets`' `save_to_disk`;
- an optional `@SPLIT` suffix: train, validation, test, or all (the three concatenated).
  Default: the checkpoint's evaluation split for named datasets and saved DatasetDicts, all
  for files.

Every dataset is encoded with the checkpoint's tokenizer. Characters the tokenizer cannot
represent (`Tokenizer.unrepresentable`) are counted and reported per dataset with how they
were handled: encoded lossily (to the tokenizer's unknown id, or changed by its
normalisation), or dropped where the tokenizer refuses them; nothing is mapped silently. Sequences follow the packed or padded protocol of
`oemdm_core.runtime.data_cache`; the padded one needs a model trained with a pad id.
"""

from __future__ import annotations

import glob
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml
from torch import Tensor

from oemdm_core.errors import ConfigError
from oemdm_core.interfaces.data import SPLITS, Dataset, Tokenizer
from oemdm_core.runtime.data_cache import PROTOCOLS, Sequences, eval_batches
from oemdm_core.runtime.evaluation.likelihood import EvalResult

SPLIT_CHOICES = (*SPLITS, "all")
TABULAR = (".parquet", ".arrow", ".jsonl", ".json")


@dataclass
class DataSpec:
    """A parsed `--data` spec: the label the user gave, the dataset and the split."""

    label: str
    dataset: Dataset
    split: str  # one of SPLIT_CHOICES: the dataset's split that is read
    whole: bool = False  # the split holds the whole data (a file, a single saved Dataset)

    @property
    def shown_split(self) -> str:
        return "all" if self.whole else self.split

    def texts(self) -> list[str]:
        """The documents of the split (all: the three splits, in order)."""
        if self.split == "all":
            return [t for s in SPLITS for t in self.dataset.texts(s)]
        return self.dataset.texts(self.split)


def _bad(spec: str, why: str) -> ConfigError:
    return ConfigError(f"--data {spec!r}: {why}")


def parse_data_spec(spec: str, registry, default_split: str = "validation") -> DataSpec:
    """Resolve one `--data` spec (see module) and check that its data can be read, so a bad
    spec fails before any evaluation starts."""
    text, split = spec, None
    head, sep, tail = spec.rpartition("@")
    if Path(spec).expanduser().exists():
        pass  # a path that contains '@'
    elif sep and tail in SPLIT_CHOICES:
        text, split = head, tail
    elif sep and head and "/" not in tail and ":" not in tail:
        raise _bad(spec, f"unknown split {tail!r}; valid splits: {', '.join(SPLIT_CHOICES)}")
    names = registry.available("dataset")
    name, _, raw = text.partition(":")
    if name in names:
        options = {}
        if raw.strip():
            try:
                options = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise _bad(spec, f"options are not valid YAML ({exc.problem})") from None
            if not isinstance(options, dict):
                raise _bad(
                    spec, "options after ':' must be a mapping, e.g. text-files:{paths: [a.txt]}"
                )
        dataset = registry.build("dataset", name, **options)
        resolved = DataSpec(spec, dataset, split or default_split)
    else:
        resolved = _path_spec(spec, text, split, registry, default_split, names)
    try:
        resolved.dataset.fingerprint()  # opens the files: missing or unreadable data fail here
    except (FileNotFoundError, ValueError) as exc:
        raise _bad(spec, str(exc)) from None
    return resolved


def _path_spec(spec, text, split, registry, default_split, names) -> DataSpec:
    path = Path(text).expanduser()
    if not path.exists() and not glob.has_magic(text):
        raise _bad(
            spec,
            f"no such file or directory, and not a registered dataset (datasets: "
            f"{', '.join(names)}; a file, a saved `datasets` directory, or NAME:{{options}})",
        )
    if path.is_dir() and (path / "dataset_dict.json").exists():
        dataset = registry.build("dataset", "hf", path=str(path))
        return DataSpec(spec, dataset, split or default_split)
    if path.is_dir() and not (path / "state.json").exists():
        raise _bad(
            spec,
            "a directory must be written by `datasets` save_to_disk (dataset_dict.json or "
            "state.json); for text files use text-files:{paths: [DIR/*.txt]}",
        )
    if split not in (None, "all"):
        raise _bad(
            spec,
            f"a file or a single saved Dataset is evaluated whole (@all), got @{split}; to "
            "split one use text-files:{paths: [FILE], test: 0.1} or hf:{path: …, splits: …}",
        )
    if path.is_dir():  # one saved Dataset: the same data for every split
        whole = {s: "train" for s in SPLITS}
        dataset = registry.build("dataset", "hf", path=str(path), splits=whole)
        return DataSpec(spec, dataset, "train", whole=True)
    if path.suffix in TABULAR:
        dataset = registry.build("dataset", "hf", path=text, splits={"train": "train"})
        return DataSpec(spec, dataset, "train", whole=True)  # data_files: the 'train' split
    dataset = registry.build("dataset", "text-files", paths=[text], validation=0.0, test=0.0)
    return DataSpec(spec, dataset, "train", whole=True)  # no held-out fractions: the whole file


@dataclass
class Encoded:
    """A dataset encoded with a tokenizer.

    tokens `[N]`, offsets `[D + 1]` (document d is tokens[offsets[d]:offsets[d + 1]]);
    characters: characters of the text; unrepresentable: counts of the characters the
    tokenizer cannot represent; handling: how they were treated ('none', 'lossy' when the
    tokenizer encoded them to its unknown id or a changed form, 'dropped' when it refused
    them and they were removed before encoding).
    """

    tokens: np.ndarray
    offsets: np.ndarray
    characters: int
    unrepresentable: dict[str, int]
    handling: str


def encode_texts(texts: list[str], tokenizer: Tokenizer, split_lines: bool = False) -> Encoded:
    """Encode documents (split into non-empty lines with `split_lines`), counting what the
    tokenizer cannot represent."""
    if split_lines:
        texts = [line for text in texts for line in text.splitlines() if line.strip()]
    bad = Counter(tokenizer.unrepresentable("".join(texts)))
    handling = "lossy" if bad else "none"
    try:
        pieces = [tokenizer.encode(t) for t in texts]
    except ValueError:  # the tokenizer refuses them: drop them, and say so
        table = {ord(c): None for c in bad}
        pieces = [tokenizer.encode(t.translate(table)) for t in texts]
        handling = "dropped"
    dtype = np.int64
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in pieces])
    flat = (
        np.concatenate([np.asarray(p, dtype=dtype) for p in pieces])
        if pieces
        else np.zeros(0, dtype)
    )
    return Encoded(flat, offsets, sum(len(t) for t in texts), dict(bad.most_common()), handling)


@dataclass
class ZeroShotRow:
    """One dataset's result.

    tokens: positions scored (sequences × L; padded sequences count their pads, as in
    training). bits_per_char: bits per token × (tokens ÷ characters of the whole split), an
    estimate from the split's average characters per token (packed protocol only).
    unrepresentable: characters the tokenizer could not represent; their most frequent
    values are in `unrepresentable_chars`.
    """

    dataset: str
    split: str
    protocol: str
    sequences: int
    tokens: int
    bits_per_token: float
    perplexity: float
    stderr_bits: float
    bits_per_char: float | None
    characters: int
    unrepresentable: int
    handling: str
    unrepresentable_chars: dict[str, int] = field(default_factory=dict)
    mode: str = "deterministic"

    def as_dict(self) -> dict:
        return asdict(self)


def prepare(
    specs: list[DataSpec],
    tokenizer: Tokenizer,
    model_vocab: int,
    length: int,
    protocol: str,
    split_lines: bool = False,
) -> list[tuple[DataSpec, Encoded, Sequences]]:
    """Encode every dataset and cut it into sequences; fails on the first dataset that
    cannot fill one sequence, before anything is evaluated."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    pad_id = tokenizer.vocab_size
    if protocol == "padded" and model_vocab != tokenizer.vocab_size + 1:
        raise ConfigError(
            f"the padded protocol needs a pad id (model V = tokenizer V + 1 = "
            f"{tokenizer.vocab_size + 1}), but this model has V = {model_vocab}: it was "
            "trained packed; evaluate it with --protocol packed"
        )
    prepared = []
    for spec in specs:
        encoded = encode_texts(spec.texts(), tokenizer, split_lines)
        data = Sequences(encoded.tokens, encoded.offsets, length, protocol, pad_id)
        if len(data) == 0:
            raise _bad(
                spec.label,
                f"{len(encoded.tokens)} tokens in split {spec.shown_split!r}, fewer than one "
                f"sequence of length {length} (use --length or a larger split)",
            )
        prepared.append((spec, encoded, data))
    return prepared


def zero_shot(
    prepared: list[tuple[DataSpec, Encoded, Sequences]],
    evaluate: Callable[[list[Tensor]], EvalResult],
    batch_size: int,
    max_sequences: int | None,
) -> list[ZeroShotRow]:
    """Evaluate every prepared dataset with `evaluate(batches) -> EvalResult`."""
    rows = []
    for spec, encoded, data in prepared:
        result = evaluate(eval_batches(data, batch_size, max_sequences))
        per_char = None
        if data.protocol == "packed" and encoded.characters:
            per_char = result.bits_per_token * len(encoded.tokens) / encoded.characters
        rows.append(
            ZeroShotRow(
                dataset=spec.label,
                split=spec.shown_split,
                protocol=data.protocol,
                sequences=result.num_sequences,
                tokens=result.num_sequences * result.tokens_per_sequence,
                bits_per_token=result.bits_per_token,
                perplexity=result.perplexity,
                stderr_bits=result.stderr_bits,
                bits_per_char=per_char,
                characters=encoded.characters,
                unrepresentable=sum(encoded.unrepresentable.values()),
                handling=encoded.handling,
                unrepresentable_chars=dict(list(encoded.unrepresentable.items())[:10]),
                mode=result.mode,
            )
        )
    return rows


def format_table(rows: list[ZeroShotRow]) -> str:
    """dataset | split | tokens | bits/token | perplexity | ± SE | bits/char | unrepresentable."""
    header = [
        "dataset",
        "split",
        "tokens",
        "bits/token",
        "perplexity",
        "± SE",
        "bits/char",
        "unrepr.",
    ]
    body = []
    for r in rows:
        unrepr = str(r.unrepresentable)
        if r.unrepresentable:
            shown = "".join(list(r.unrepresentable_chars)[:5])
            unrepr += f" ({r.handling}: {shown!r})"
        body.append(
            [
                r.dataset,
                r.split,
                str(r.tokens),
                f"{r.bits_per_token:.4f}",
                f"{r.perplexity:.3f}",
                f"{r.stderr_bits:.4f}",
                "-" if r.bits_per_char is None else f"{r.bits_per_char:.4f}",
                unrepr,
            ]
        )
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
