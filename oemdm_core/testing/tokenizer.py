"""`check_tokenizer`: a tokenizer fitted on a sample text maps it to ids in [0, vocab_size)
and back, reports exactly the characters it cannot represent, refuses text only with a
`ValueError`, and is rebuilt from its options and `state()` (what a checkpoint stores)."""

from __future__ import annotations

import json
from collections import Counter

from oemdm_core.interfaces.data import Tokenizer
from oemdm_core.plugin.registry import Registry, resolve_registry
from oemdm_core.testing.common import call, component_label, fail, rebuilt

# Repeated so that subword tokenizers find pairs to merge; ASCII, punctuation, digits,
# runs of whitespace, accents, CJK and an emoji.
SAMPLE_TEXT = (
    "The quick brown fox jumps over the lazy dog.\n"
    "Pack my box with five dozen liquor jugs!  0123456789 (a, b) = [c; d]\n"
    "\tÜmlaut, façade, straße; 中文 text 😀 ok.\n\n"
) * 20
# Characters a tokenizer fitted on SAMPLE_TEXT has not seen.
UNSEEN_TEXT = "Zebra ☃ quxX ж \u00a0€"


def check_tokenizer(
    tokenizer: Tokenizer,
    *,
    registry: Registry | None = None,
    text: str = SAMPLE_TEXT,
    unseen: str = UNSEEN_TEXT,
) -> None:
    """Check a built tokenizer (it is fitted on `text` first; `fit` is a no-op for fixed
    vocabularies):

    - `vocab_size` is an int ≥ 1; `encode(text)` is a list of ints in [0, vocab_size),
      the same on a second call;
    - `unrepresentable(s)` maps characters of `s` to their counts in `s`; every character
      of `text` and `unseen` it does not report encodes alone and decodes back to itself
      (whitespace may decode to nothing), and so do those of `text` joined by spaces, in
      order (up to whitespace: word-level tokenizers join words their own way);
    - text with unseen characters is encoded to valid ids or refused with a `ValueError`;
    - `state()` is JSON; a tokenizer rebuilt from `get_options()` (through `registry`,
      default the global one) that loads it has the same vocab_size, ids and decoding.

    Raises `ConformanceError`.
    """
    registry = resolve_registry(registry)
    who = component_label(tokenizer)
    call(who, "fit(text)", tokenizer.fit, text)
    vocab = call(who, "vocab_size", lambda: tokenizer.vocab_size)
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab < 1:
        fail(who, "vocab_size is an int >= 1", "after fit(text)", repr(vocab))
    ids = _encode(who, tokenizer, "the sample text", text, vocab)
    if call(who, "encode(text) again", tokenizer.encode, text) != ids:
        fail(who, "encode is deterministic", "the sample text, encoded twice", "ids differ")
    missing = _unrepresentable(who, tokenizer, "the sample text", text)
    kept = sorted(set(text) - set(missing) - set(" \t\n"))
    spaced = " ".join(kept)  # one word per character: any vocabulary that has them all
    encoded = call(who, "encode(text)", tokenizer.encode, spaced)
    decoded = call(who, "decode(encode(text))", tokenizer.decode, encoded)
    if "".join(decoded.split()) != "".join(spaced.split()):
        where = f"the representable characters of the sample text, spaced: {spaced!r}"
        fail(who, "decode(encode(text)) = text", where, _first_difference(decoded, spaced))
    _check_characters(who, tokenizer, text, unseen, vocab)
    _check_state(who, tokenizer, registry, text, vocab, ids)


def _encode(who: str, tokenizer: Tokenizer, label: str, text: str, vocab: int) -> list[int]:
    ids = call(who, f"encode ({label})", tokenizer.encode, text)
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        fail(who, "encode returns a list of ints", label, f"got {type(ids).__name__}")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        fail(who, f"ids in [0, vocab_size={vocab})", label, f"id {bad[0]}")
    return ids


def _unrepresentable(who: str, tokenizer: Tokenizer, label: str, text: str) -> dict[str, int]:
    found = call(who, f"unrepresentable ({label})", tokenizer.unrepresentable, text)
    counts = Counter(text)
    if not isinstance(found, dict) or any(counts.get(c) != n for c, n in found.items()):
        fail(who, "unrepresentable maps characters of the text to their counts", label, repr(found))
    return found


def _check_characters(who: str, tokenizer: Tokenizer, text: str, unseen: str, vocab: int) -> None:
    missing = _unrepresentable(who, tokenizer, "unseen characters", unseen)
    reported = set(missing) | set(tokenizer.unrepresentable(text))
    for char in sorted(set(text + unseen) - reported):
        where = f"the character {char!r}, not reported by unrepresentable"
        encoded = call(who, f"encode({char!r})", tokenizer.encode, char)
        shown = call(who, f"decode(encode({char!r}))", tokenizer.decode, encoded)
        if shown != char and not (char.isspace() and shown == ""):
            fail(who, "what unrepresentable does not report decodes back", where, repr(shown))
    try:
        tokenizer.encode(unseen)
    except ValueError:
        return  # refused, as `Tokenizer.unrepresentable` allows
    except Exception as exc:
        detail = f"raised {type(exc).__name__}: {exc}"
        fail(who, "text is encoded or refused with ValueError", repr(unseen), detail)
    _encode(who, tokenizer, "unseen characters", unseen, vocab)


def _check_state(who, tokenizer: Tokenizer, registry, text, vocab, ids) -> None:
    state = call(who, "state()", tokenizer.state)
    try:
        saved = json.loads(json.dumps(state))
    except (TypeError, ValueError) as exc:
        fail(who, "state() is JSON-serialisable", "after fit(text)", f"{type(exc).__name__}: {exc}")
    copy = rebuilt(who, tokenizer, registry)
    call(who, "load_state(state()) on a rebuilt tokenizer", copy.load_state, saved)
    prop = "a rebuilt tokenizer that loads state() encodes the same"
    got = call(who, "vocab_size after load_state", lambda: copy.vocab_size)
    if got != vocab:
        fail(who, prop, "vocab_size", f"{got!r}, expected {vocab!r}")
    if call(who, "encode after load_state", copy.encode, text) != ids:
        fail(who, prop, "the sample text", "ids differ")
    if copy.decode(ids) != tokenizer.decode(ids):
        fail(who, prop, "decode of the sample ids", "texts differ")


def _first_difference(got: str, expected: str) -> str:
    pairs = zip(got, expected, strict=False)
    at = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(got), len(expected)))
    return f"character {at}: got {got[at : at + 12]!r}, expected {expected[at : at + 12]!r}"


__all__ = ("SAMPLE_TEXT", "UNSEEN_TEXT", "check_tokenizer")
