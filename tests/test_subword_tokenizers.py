"""Subword tokenizers: `bpe` trained on the training split and `hf` loading a local
tokenizer.json (GPT-2-style byte-level BPE and BERT-style WordPiece, written on the fly)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tokenizers")

from oemdm_data import BPETokenizer, HFTokenizer, TextFiles  # noqa: E402
from tokenizers import Tokenizer as HFLib  # noqa: E402
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

from oemdm_core.plugin.registry import Registry  # noqa: E402
from oemdm_core.runtime.token_cache import fit_tokenizer, tokenize_split  # noqa: E402

TEXT = "the cat sat on the mat. the dog sat on the log.\n\n" * 40 + "théâtre naïve café\n"


def test_byte_level_bpe_learns_merges_and_round_trips_any_text():
    tok = BPETokenizer(vocab_size=300)
    tok.fit(TEXT)
    assert 256 < tok.vocab_size <= 300
    assert len(tok.encode("the cat sat on the mat.")) < len("the cat sat on the mat.") / 2
    for text in ["the cat", "unseen 😀 ünïcödé\n\t  x", ""]:
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text
    assert tok.unrepresentable("anything 😀") == {}


def test_bpe_state_round_trips_into_a_fresh_tokenizer():
    tok = BPETokenizer(vocab_size=280)
    tok.fit(TEXT)
    fresh = BPETokenizer(vocab_size=280)
    with pytest.raises(ValueError, match="no vocabulary yet"):
        fresh.encode("x")
    fresh.load_state(json.loads(json.dumps(tok.state())))
    assert fresh.encode(TEXT[:200]) == tok.encode(TEXT[:200])
    assert fresh.get_options() == {"vocab_size": 280, "byte_level": True, "min_frequency": 2}


def test_character_bpe_counts_unseen_characters_and_decodes_them_as_unknown():
    tok = BPETokenizer(vocab_size=60, byte_level=False)
    tok.fit(TEXT)
    assert tok.decode(tok.encode("the cat sat")) == "the cat sat"
    assert tok.unrepresentable("the 😀 cat 😀 Z") == {"😀": 2, "Z": 1}
    assert "\ufffd" in tok.decode(tok.encode("the 😀"))


def test_bpe_options_are_validated_with_one_line(fresh_registry: Registry):
    with pytest.raises(ValueError, match="vocab_size 100 is below the 256 byte ids"):
        fresh_registry.build("tokenizer", "bpe", vocab_size=100)
    with pytest.raises(ValueError, match=r"tokenizer\[bpe\]\.vocab_size: got 1"):
        fresh_registry.build("tokenizer", "bpe", vocab_size=1)
    assert isinstance(
        fresh_registry.build("tokenizer", "bpe", vocab_size=64, byte_level=False), BPETokenizer
    )


def test_bpe_vocabulary_is_cached_beside_the_token_cache(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text(TEXT)
    ds = TextFiles(paths=[str(tmp_path / "a.txt")])
    tok = BPETokenizer(vocab_size=290)
    fit_tokenizer(ds, tok, tmp_path / "cache")
    cached = list((tmp_path / "cache").glob("tokenizer-*.json"))
    assert len(cached) == 1
    tokens, _ = tokenize_split(ds, tok, "train", tmp_path / "cache")
    assert len(tokens) < len(ds.texts("train")[0]) / 2  # subwords, not characters
    again = BPETokenizer(vocab_size=290)
    monkeypatch.setattr(BPETokenizer, "fit", lambda self, text: pytest.fail("retrained"))
    fit_tokenizer(ds, again, tmp_path / "cache")
    assert again.state() == tok.state()
    other = BPETokenizer(vocab_size=270)  # other options: another cache entry
    monkeypatch.undo()
    fit_tokenizer(ds, other, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("tokenizer-*.json"))) == 2


def gpt2_style_tokenizer_json(path, text: str = TEXT) -> str:
    """A GPT-2-like byte-level BPE tokenizer.json trained on `text`."""
    tok = HFLib(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        [text],
        trainers.BpeTrainer(
            vocab_size=300,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=["<|endoftext|>"],
            show_progress=False,
        ),
    )
    tok.save(str(path))
    return str(path)


def bert_style_tokenizer_json(path, text: str = TEXT) -> str:
    """A BERT-like WordPiece tokenizer.json (lower-casing, [CLS] … [SEP]) trained on `text`."""
    tok = HFLib(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(
        [text],
        trainers.WordPieceTrainer(
            vocab_size=120, special_tokens=["[UNK]", "[CLS]", "[SEP]"], show_progress=False
        ),
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.save(str(path))
    return str(path)


def test_hf_tokenizer_loads_a_gpt2_style_file(tmp_path):
    path = gpt2_style_tokenizer_json(tmp_path / "tokenizer.json")
    tok = HFTokenizer(path=path)
    assert tok.vocab_size == HFLib.from_file(path).get_vocab_size()
    text = "the dog sat on the café 😀"
    assert tok.decode(tok.encode(text)) == text
    assert tok.unrepresentable(text) == {}
    # the file's text is the state: a checkpoint decodes the same after the file is gone
    state = tok.state()
    (tmp_path / "tokenizer.json").unlink()
    assert json.loads(state["tokenizer_json"])["model"]["type"] == "BPE"


def test_hf_tokenizer_loads_a_bert_style_file_and_reports_what_it_cannot_represent(tmp_path):
    tok = HFTokenizer(path=bert_style_tokenizer_json(tmp_path / "tokenizer.json"))
    ids = tok.encode("the cat")
    assert ids[0] == HFLib.from_file(str(tmp_path / "tokenizer.json")).token_to_id("[CLS]")
    assert tok.decode(ids) == "the cat"
    bad = tok.unrepresentable("The cat 😀\n")
    assert bad == {"T": 1, "😀": 1}  # lower-cased away and unknown; whitespace separates


def test_hf_tokenizer_rejects_a_file_that_is_not_a_tokenizer(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a tokenizer.json"):
        HFTokenizer(path=str(tmp_path / "tokenizer.json"))


def test_train_with_a_bpe_tokenizer_end_to_end(tmp_path):
    from conftest import tiny_run

    from oemdm_core.cli import main
    from oemdm_core.runtime.checkpoint.store import load_json

    args = tiny_run(tmp_path, "run", "data.tokenizer={name: bpe, vocab_size: 320}")
    assert main(["train", *[a for o in args for a in ("--set", o)]]) == 0
    record = load_json(tmp_path / "run" / "checkpoint" / "tokenizer.json")
    assert record["name"] == "bpe" and "tokenizer_json" in record["state"]
    tok = BPETokenizer(**record["options"])
    tok.load_state(record["state"])
    assert 256 < tok.vocab_size <= 320
    model_cfg = load_json(tmp_path / "run" / "checkpoint" / "model" / "config.json")
    assert model_cfg["model"]["vocab_size"] == tok.vocab_size
    assert list((tmp_path / "cache").glob("tokenizer-*.json"))  # cached beside the tokens
