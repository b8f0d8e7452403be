"""The kits of the data and estimation kinds (estimator, tokenizer, dataset) fail, naming the
component and the property, on a component built to break exactly that property; the same
components without a defect pass (the other kinds: test_kits_catch_broken.py)."""

from __future__ import annotations

import pytest
import torch
from oemdm_data import CharTokenizer
from pydantic import Field

from oemdm_core import (
    Dataset,
    MonteCarloEstimator,
    registry,
)
from oemdm_core.interfaces.data import SPLITS
from oemdm_core.plugin.component import Options
from oemdm_core.testing import (
    ConformanceError,
    check_dataset,
    check_estimator,
    check_tokenizer,
)
from oemdm_core.testing.estimator import estimator_models


# -- estimators ----------------------------------------------------------------------------------
class Defective(MonteCarloEstimator):
    """The generic estimator with one defect, chosen by `defect`."""

    name = "defective"

    class Options(MonteCarloEstimator.Options):
        defect: str = Field(default="none", description="The property to break.")

    def unsupported_reason(self, model):
        defect = self.options.defect
        if defect == "serves_nothing":
            return f"order '{model.order.name}' is not served"
        return False if defect == "reason_not_a_string" else None

    def nelbo(self, model, x, t=None, steps=None, generator=None):
        defect = self.options.defect
        given = t
        if defect == "global_rng":
            generator = None
        if defect == "ignores_steps":
            steps = None
        terms = super().nelbo(model, x, t=t, steps=steps, generator=generator)
        scale = None
        if defect == "biased":
            scale = torch.full_like(terms.total, 1.1)
        if defect == "biased_at_given_t" and given is not None:
            scale = 2.0 * given
        if scale is not None:
            terms.total, terms.reconstruction = scale * terms.total, scale * terms.reconstruction
        if defect == "parts_do_not_add_up":
            terms.velocity_matching = terms.velocity_matching + 0.5
        if defect == "negative_reconstruction":
            terms.reconstruction = terms.reconstruction - 100.0
            terms.velocity_matching = terms.velocity_matching + 100.0
        if defect == "shape":
            terms.total = terms.total[:, None]
        if defect == "nan":
            terms.total = terms.total + torch.nan
        return terms


def first_model():
    return estimator_models(registry)[:1]  # order 'mdm', bidirectional


def test_the_defective_estimator_without_a_defect_passes():
    check_estimator(Defective(), models=first_model())


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("biased", "unbiased: the mean over draws is L(x) fails"),
        ("biased_at_given_t", "unbiased at given t: the mean over t on (0, 1] is L(x) fails"),
        ("ignores_steps", "unbiased with steps=4: the mean over draws is L_T(x) fails"),
        ("global_rng", "seeded determinism"),
        ("parts_do_not_add_up", "total = reconstruction + velocity_matching fails"),
        ("negative_reconstruction", "terms.reconstruction >= 0 fails"),
        ("shape", "terms.total is a [B] tensor fails"),
        ("nan", "terms.total is finite fails"),
        ("serves_nothing", "serves a reference model fails"),
        ("reason_not_a_string", "unsupported_reason is None or a non-empty string fails"),
    ],
)
def test_check_estimator_names_the_failing_property(defect, message):
    # For MDM on a time-free backbone L_T = L: ignoring steps shows on the other models.
    models = None if defect == "ignores_steps" else first_model()
    with pytest.raises(ConformanceError, match="estimator 'defective'") as info:
        check_estimator(Defective(defect=defect), models=models)
    assert message in str(info.value)


# -- tokenizers ----------------------------------------------------------------------------------
class BrokenChars(CharTokenizer):
    """The char tokenizer with one defect, chosen by `defect`."""

    name = "broken-chars"

    class Options(CharTokenizer.Options):
        defect: str = Field(default="none", description="The property to break.")

    @property
    def vocab_size(self):
        size = super().vocab_size
        return {"too_small": size - 1, "not_an_int": float(size)}.get(self.options.defect, size)

    def encode(self, text):
        if self.options.defect == "key_error" and any(c not in self._index for c in text):
            raise KeyError(text)
        return super().encode(text)

    def decode(self, ids):
        text = super().decode(ids)
        return {"drops_last": text[:-1], "reversed": text[::-1]}.get(self.options.defect, text)

    def unrepresentable(self, text):
        found = super().unrepresentable(text)
        if self.options.defect == "hides_unseen":
            return {}
        if self.options.defect == "counts_double":
            return {c: 2 * n for c, n in found.items()}
        return found

    def state(self):
        defect = self.options.defect
        if defect == "loses_a_character":
            return {"chars": self.chars[:-1]}
        return {"chars": set(self.chars)} if defect == "not_json" else super().state()


def test_the_broken_tokenizer_without_a_defect_passes():
    check_tokenizer(BrokenChars())
    check_tokenizer(BrokenChars(unknown=False))


@pytest.mark.parametrize(
    ("defect", "options", "message"),
    [
        ("too_small", {}, "ids in [0, vocab_size="),
        ("not_an_int", {}, "vocab_size is an int >= 1 fails"),
        ("drops_last", {}, "decode(encode(text)) = text fails"),
        ("reversed", {}, "decode(encode(text)) = text fails"),
        ("hides_unseen", {}, "what unrepresentable does not report decodes back fails"),
        ("counts_double", {}, "unrepresentable maps characters of the text to their counts"),
        ("key_error", {"unknown": False}, "text is encoded or refused with ValueError fails"),
        ("not_json", {}, "state() is JSON-serialisable fails"),
        ("loses_a_character", {}, "a rebuilt tokenizer that loads state() encodes the same fails"),
    ],
)
def test_check_tokenizer_names_the_failing_property(defect, options, message):
    with pytest.raises(ConformanceError, match="tokenizer 'broken-chars'") as info:
        check_tokenizer(BrokenChars(defect=defect, **options))
    assert message in str(info.value)


# -- datasets ------------------------------------------------------------------------------------
class BrokenCorpus(Dataset):
    """Four short documents per split; `defect` breaks one property."""

    name = "broken-corpus"

    class Options(Options):
        defect: str = Field(default="none", description="The property to break.")

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.calls = 0

    def texts(self, split):
        defect = self.options.defect
        self.calls += 1
        if split not in SPLITS:
            if defect == "serves_unknown_splits":
                return []
            if defect == "key_error":
                raise KeyError(split)
            raise ValueError("no such split" if defect == "unnamed_split" else f"split {split!r}?")
        docs = [f"{split} document {i}" for i in range(4)]
        if defect == "rotates":
            docs = docs[self.calls % 4 :] + docs[: self.calls % 4]
        if defect == "empty_train" and split == "train":
            return ["", ""]
        if defect == "a_string":
            return "\n".join(docs)
        return [d.encode() for d in docs] if defect == "bytes" else docs

    def fingerprint(self):
        defect = self.options.defect
        if defect == "not_a_string":
            return 42
        if defect == "counts_calls":
            self.calls += 1
            return f"{self.name} {self.calls}"
        return f"{self.name} {id(self)}" if defect == "per_object" else super().fingerprint()


def test_the_broken_dataset_without_a_defect_passes():
    check_dataset(BrokenCorpus())


@pytest.mark.parametrize(
    ("defect", "message"),
    [
        ("a_string", "texts(split) is a list of strings fails at split 'train': got str"),
        ("bytes", "texts(split) is a list of strings fails"),
        ("rotates", "texts(split) is the same on every call fails"),
        ("empty_train", "the train split holds text fails"),
        ("serves_unknown_splits", "an unknown split raises ValueError fails"),
        ("key_error", "an unknown split raises ValueError fails"),
        ("unnamed_split", "an unknown split is refused naming it fails"),
        ("not_a_string", "fingerprint() is a non-empty string fails"),
        ("counts_calls", "fingerprint() is the same on every call fails"),
        ("per_object", "rebuilt from get_options(), the same fingerprint fails"),
    ],
)
def test_check_dataset_names_the_failing_property(defect, message):
    with pytest.raises(ConformanceError, match="dataset 'broken-corpus'") as info:
        check_dataset(BrokenCorpus(defect=defect))
    assert message in str(info.value)
