"""`check_dataset`: a dataset serves every split as a list of strings, the same on every call,
refuses other split names naming them, and has a fingerprint (the key of the tokenized-data
cache) that is a function of its options and data alone."""

from __future__ import annotations

from oemdm_core.interfaces.data import SPLITS, Dataset
from oemdm_core.plugin.registry import Registry, resolve_registry
from oemdm_core.testing.common import call, component_label, fail, rebuilt

UNKNOWN_SPLIT = "no-such-split"


def check_dataset(dataset: Dataset, *, registry: Registry | None = None) -> None:
    """Check a built dataset:

    - `texts(split)` for every split of `SPLITS` is a list of strings, the same on a second
      call; the train split holds some text;
    - `texts` of another split name raises a `ValueError` that names it;
    - `fingerprint()` is a non-empty string, the same on a second call and for the dataset
      rebuilt from `get_options()` (through `registry`, default the global one), which
      serves the same train split.

    Raises `ConformanceError`.
    """
    registry = resolve_registry(registry)
    who = component_label(dataset)
    splits = {split: _texts(who, dataset, split) for split in SPLITS}
    for split in SPLITS:
        if _texts(who, dataset, split) != splits[split]:
            fail(who, "texts(split) is the same on every call", f"split {split!r}", "differs")
    if not any(splits["train"]):
        fail(who, "the train split holds text", "split 'train'", "no characters")
    try:
        dataset.texts(UNKNOWN_SPLIT)
    except ValueError as exc:
        if UNKNOWN_SPLIT not in str(exc):
            fail(who, "an unknown split is refused naming it", repr(UNKNOWN_SPLIT), str(exc))
    except Exception as exc:
        detail = f"raised {type(exc).__name__}: {exc}"
        fail(who, "an unknown split raises ValueError", repr(UNKNOWN_SPLIT), detail)
    else:
        fail(who, "an unknown split raises ValueError", repr(UNKNOWN_SPLIT), "it was served")
    fingerprint = call(who, "fingerprint()", dataset.fingerprint)
    if not isinstance(fingerprint, str) or not fingerprint:
        fail(who, "fingerprint() is a non-empty string", "the call", repr(fingerprint))
    if call(who, "fingerprint() again", dataset.fingerprint) != fingerprint:
        fail(who, "fingerprint() is the same on every call", "two calls", "they differ")
    copy = rebuilt(who, dataset, registry)
    again = call(who, "fingerprint() of the rebuilt dataset", copy.fingerprint)
    if again != fingerprint:
        prop = "rebuilt from get_options(), the same fingerprint"
        fail(who, prop, "the rebuilt dataset", f"{again!r}, expected {fingerprint!r}")
    if _texts(who, copy, "train") != splits["train"]:
        fail(who, "rebuilt from get_options(), the same texts", "split 'train'", "they differ")


def _texts(who: str, dataset: Dataset, split: str) -> list[str]:
    texts = call(who, f"texts({split!r})", dataset.texts, split)
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        got = type(texts).__name__ if not isinstance(texts, list) else "a list with non-strings"
        fail(who, "texts(split) is a list of strings", f"split {split!r}", f"got {got}")
    return texts


__all__ = ("check_dataset",)
