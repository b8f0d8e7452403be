"""Zero-shot evaluation: one checkpoint on several datasets, through its own tokenizer.

The datasets are `--data` specs (`oemdm_core.runtime.evaluation.data_spec`). Every dataset
is encoded with the checkpoint's tokenizer. Characters the tokenizer cannot represent
(`Tokenizer.unrepresentable`) are counted and reported per dataset with how they were
handled: encoded lossily (to the tokenizer's unknown id, or changed by its normalisation),
or dropped where the tokenizer refuses them; nothing is mapped silently. Sequences follow
the packed or padded protocol of `oemdm_core.runtime.data_cache`; the padded one needs a
model trained with a pad id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from torch import Tensor

from oemdm_core.errors import ConfigError
from oemdm_core.interfaces.data import Tokenizer
from oemdm_core.runtime.data_cache import PROTOCOLS, Sequences, eval_batches
from oemdm_core.runtime.evaluation.data_spec import DataSpec, spec_error
from oemdm_core.runtime.evaluation.likelihood import EvalResult

__all__ = [
    "Encoded",
    "ZeroShotRow",
    "encode_texts",
    "format_table",
    "prepare",
    "zero_shot",
]


@dataclass
class Encoded:
    """A dataset encoded with a tokenizer.

    tokens `[N]` (uint16; int32 for vocabularies of 2^16 ids or more), offsets `[D + 1]`
    (document d is tokens[offsets[d]:offsets[d + 1]]); characters: characters of the text;
    unrepresentable: counts of the characters the tokenizer cannot represent; handling: how
    they were treated ('none', 'lossy' when the tokenizer encoded them to its unknown id or a
    changed form, 'dropped' when it refused them and they were removed before encoding).
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
    # Each document's ids become a compact array at once (as in the token cache): a list of
    # Python ints costs 8 bytes or more per token, int64 another 8.
    dtype = np.uint16 if tokenizer.vocab_size + 1 < 2**16 else np.int32
    try:
        pieces = [np.asarray(tokenizer.encode(t), dtype=dtype) for t in texts]
    except ValueError:  # the tokenizer refuses them: drop them, and say so
        table = {ord(c): None for c in bad}
        pieces = [np.asarray(tokenizer.encode(t.translate(table)), dtype=dtype) for t in texts]
        handling = "dropped"
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in pieces])
    flat = np.concatenate(pieces) if pieces else np.zeros(0, dtype)
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
            raise spec_error(
                spec.label,
                f"{len(encoded.tokens)} tokens in split {spec.shown_split!r}, fewer than one "
                f"sequence of length {length} (use --length or a larger split)",
            )
        prepared.append((spec, encoded, data))
    return prepared


def zero_shot(
    prepared: list[tuple[DataSpec, Encoded, Sequences]],
    evaluate: Callable[[Sequence[Tensor]], EvalResult],
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
