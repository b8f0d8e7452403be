"""Datasets, tokenizers, the token cache and the batching protocols."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import numpy as np
import pytest
from oemdm_data import ByteTokenizer, CharTokenizer, HFDataset, HFTokenizer, Pydoc, TextFiles

from oemdm_core.runtime.data_cache import Sequences, eval_batches, shard_indices
from oemdm_core.runtime.token_cache import fit_tokenizer, tokenize_split

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


# -- pydoc ---------------------------------------------------------------------------------
def test_pydoc_is_the_sorted_topics_split_contiguously():
    from pydoc_data.topics import topics

    ds = Pydoc()
    corpus = "\n\n".join(topics[k] for k in sorted(topics))
    parts = [ds.texts(s) for s in ("train", "validation", "test")]
    assert all(len(p) == 1 for p in parts)
    assert "".join(p[0] for p in parts) == corpus
    assert abs(len(parts[1][0]) - 0.05 * len(corpus)) <= 1
    assert len(corpus) > 400_000


def test_unknown_split_and_bad_fractions():
    with pytest.raises(ValueError, match="unknown split 'dev'; valid splits: train"):
        Pydoc().texts("dev")
    with pytest.raises(ValueError, match="sum to < 1"):
        Pydoc(validation=0.6, test=0.5)


# -- text-files ----------------------------------------------------------------------------
def test_text_files_plain_gz_xz_and_globs(tmp_path):
    (tmp_path / "a.txt").write_text("alpha ")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write("beta ")
    with lzma.open(tmp_path / "c.txt.xz", "wt") as f:
        f.write("gamma")
    ds = TextFiles(paths=[str(tmp_path / "*.txt*")], validation=0.0, test=0.0, separator="|")
    assert ds.texts("train") == ["alpha |beta |gamma"]
    assert ds.texts("validation") == [""]


def test_text_files_contiguous_split(tmp_path):
    (tmp_path / "a.txt").write_text("0123456789" * 10)
    ds = TextFiles(paths=[str(tmp_path / "a.txt")], validation=0.1, test=0.2)
    train, val, test = (ds.texts(s)[0] for s in ("train", "validation", "test"))
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    assert train + val + test == "0123456789" * 10


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        TextFiles(paths=[str(missing)]).texts("train")
    with pytest.raises(FileNotFoundError, match=r"glob matched no files: .*\*.zzz"):
        TextFiles(paths=[str(tmp_path / "*.zzz")]).texts("train")
    with pytest.raises(ValueError, match="needs paths"):
        TextFiles(paths=[])


def test_undecodable_bytes_name_file_and_offset(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello \xff world")
    with pytest.raises(ValueError, match=r"bad.txt: bytes at offset 6 are not valid UTF-8"):
        TextFiles(paths=[str(path)]).texts("train")
    assert TextFiles(paths=[str(path)], errors="replace", validation=0, test=0).texts("train") == [
        "hello \ufffd world"
    ]
    assert TextFiles(paths=[str(path)], errors="ignore", validation=0, test=0).texts("train") == [
        "hello  world"
    ]


@pytest.mark.skipif(not (SHARED / "austen.txt.xz").is_file(), reason="shared corpus absent")
def test_text_files_reads_the_shared_xz_corpus():
    ds = TextFiles(paths=[str(SHARED / "austen.txt.xz")])
    assert len(ds.texts("train")[0]) > 100_000


# -- hf ------------------------------------------------------------------------------------
def test_hf_dataset_offline_error_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ds = HFDataset(path="oemdm-no-such-dataset-xyz")
    with pytest.raises(ValueError, match="could not load 'oemdm-no-such-dataset-xyz'.*network"):
        ds.texts("train")


def test_hf_dataset_local_saved_dataset(tmp_path):
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": ["a b", "c d"]}),
            "validation": datasets.Dataset.from_dict({"text": ["e"]}),
            "test": datasets.Dataset.from_dict({"text": ["f"]}),
        }
    )
    dd.save_to_disk(str(tmp_path / "local"))
    ds = HFDataset(path=str(tmp_path / "local"))
    assert ds.texts("train") == ["a b", "c d"]
    with pytest.raises(ValueError, match="no column 'body'"):
        HFDataset(path=str(tmp_path / "local"), text_field="body").texts("train")


# -- tokenizers ----------------------------------------------------------------------------
def test_char_tokenizer_fit_roundtrip_unknown_and_state():
    tok = CharTokenizer()
    with pytest.raises(ValueError, match="no vocabulary yet"):
        tok.encode("a")
    tok.fit("banana!")
    assert tok.vocab_size == 5  # ! a b n + unknown
    assert tok.decode(tok.encode("banana")) == "banana"
    assert tok.encode("z") == [4]
    assert tok.decode([4]) == "\ufffd"
    other = CharTokenizer()
    other.load_state(tok.state())
    assert other.encode("nab!") == tok.encode("nab!")
    strict = CharTokenizer(unknown=False)
    strict.fit("ab")
    with pytest.raises(ValueError, match="character 'z' was not seen in training"):
        strict.encode("az")
    with pytest.raises(ValueError, match="empty text"):
        CharTokenizer().fit("")


def test_byte_tokenizer_roundtrip():
    tok = ByteTokenizer()
    assert tok.vocab_size == 256
    assert tok.decode(tok.encode("héllo")) == "héllo"
    assert tok.decode([0xFF]) == "\ufffd"


def test_hf_tokenizer_errors(tmp_path):
    with pytest.raises(ValueError, match="needs a path"):
        HFTokenizer()
    with pytest.raises(FileNotFoundError, match="no tokenizer file at .*missing.json"):
        HFTokenizer(path=str(tmp_path / "missing.json"))
    (tmp_path / "tokenizer.json").write_text("{}")
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install tokenizers"):
            HFTokenizer(path=str(tmp_path / "tokenizer.json"))


# -- cache and protocols -------------------------------------------------------------------
def test_token_cache_is_reused_and_keyed_by_tokenizer_state(tmp_path):
    (tmp_path / "a.txt").write_text("abcabcabcabd" * 20)
    ds = TextFiles(paths=[str(tmp_path / "a.txt")])
    tok = CharTokenizer()
    fit_tokenizer(ds, tok, tmp_path / "cache")
    tokens, offsets = tokenize_split(ds, tok, "train", tmp_path / "cache")
    assert tok.decode(np.asarray(tokens).tolist()) == ds.texts("train")[0]

    def boom(text):
        raise AssertionError("encode called despite the cache")

    tok.encode = boom
    again, _ = tokenize_split(ds, tok, "train", tmp_path / "cache")
    assert isinstance(again, np.memmap)  # memory-mapped from the cache
    assert np.array_equal(again, tokens)
    other = CharTokenizer()
    other.load_state({"chars": ["a", "b", "c"]})  # different state → different key
    fresh, _ = tokenize_split(ds, other, "train", tmp_path / "cache")
    assert int(np.asarray(fresh).max()) == 3  # 'd' maps to the unknown id
    train_chars = sorted(set(ds.texts("train")[0]))
    ds.texts = boom  # the fitted vocabulary also comes from the cache
    fitted_again = CharTokenizer()
    fit_tokenizer(ds, fitted_again, tmp_path / "cache")
    assert fitted_again.state()["chars"] == train_chars


def test_packed_and_padded_protocols():
    tokens = np.arange(10, dtype=np.uint16)
    offsets = np.array([0, 3, 10])
    packed = Sequences(tokens, offsets, length=4, protocol="packed", pad_id=0)
    assert len(packed) == 2
    assert packed.get(np.array([1])).tolist() == [[4, 5, 6, 7]]
    padded = Sequences(tokens, offsets, length=4, protocol="padded", pad_id=99)
    assert len(padded) == 2
    assert padded.get(np.array([0, 1])).tolist() == [[0, 1, 2, 99], [3, 4, 5, 6]]
    with pytest.raises(ValueError, match="protocol must be one of"):
        Sequences(tokens, offsets, length=4, protocol="wrapped", pad_id=0)
    assert [b.shape[0] for b in eval_batches(packed, 1, None)] == [1, 1]


def test_shard_indices_cover_each_epoch_and_partition_the_batch():
    n, batch = 10, 4
    seen = np.concatenate([shard_indices(n, s, batch, 0, batch, seed=3) for s in range(5)])
    assert sorted(seen[:10].tolist()) == list(range(10))  # epoch 0 is a permutation
    assert sorted(seen[10:20].tolist()) == list(range(10))
    whole = shard_indices(n, 7, batch, 0, batch, seed=3)
    halves = np.concatenate([shard_indices(n, 7, batch, k, 2, seed=3) for k in (0, 1)])
    assert np.array_equal(whole, halves)
