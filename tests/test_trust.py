"""No cache or checkpoint file is trusted unchecked, and a resume refuses changed data
(issue 24, item 3): token-cache entries and fitted tokenizer states are used only if they
match their stored sha256, a checkpoint's tokenizer.json is checked against its
checksums.json, and the training data's sha256 is compared on resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_run
from oemdm_data import CharTokenizer, TextFiles

from oemdm_core.cli import main
from oemdm_core.errors import OeMDMWarning
from oemdm_core.runtime.token_cache import fit_tokenizer, tokenize_split


def as_args(overrides: list[str]) -> list[str]:
    return [a for item in overrides for a in ("--set", item)]


def text_run(tmp_path, *extra: str) -> list[str]:
    data = tmp_path / "corpus.txt"
    if not data.exists():
        data.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    return as_args(
        tiny_run(
            tmp_path,
            "run",
            f"data.dataset={{name: text-files, paths: ['{data}']}}",
            "training.steps=4",
            *extra,
        )
    )


def test_an_edited_token_cache_is_rebuilt_not_trained_on(tmp_path):
    (tmp_path / "a.txt").write_text("abcabcabcabd" * 20)
    ds = TextFiles(paths=[str(tmp_path / "a.txt")])
    tok = CharTokenizer()
    cache = tmp_path / "cache"
    fit_tokenizer(ds, tok, cache)
    tokens, _ = tokenize_split(ds, tok, "train", cache)
    expected = np.asarray(tokens).copy()
    (path,) = cache.glob("*-tokens.npy")
    np.save(path, np.zeros_like(expected))  # same shape and dtype, other content
    with pytest.warns(OeMDMWarning, match=f"{path}.*sha256 does not match.*rebuilding"):
        again, _ = tokenize_split(ds, tok, "train", cache)
    assert np.array_equal(np.asarray(again), expected)
    path.write_bytes(path.read_bytes()[:20])  # truncated
    with pytest.warns(OeMDMWarning, match=f"{path}.*cannot be read"):
        again, _ = tokenize_split(ds, tok, "train", cache)
    assert np.array_equal(np.asarray(again), expected)


def test_an_edited_tokenizer_cache_is_refitted(tmp_path):
    (tmp_path / "a.txt").write_text("abcdefgh" * 20)
    ds = TextFiles(paths=[str(tmp_path / "a.txt")])
    cache = tmp_path / "cache"
    fit_tokenizer(ds, CharTokenizer(), cache)
    (path,) = cache.glob("tokenizer-*.json")
    text = path.read_text()
    assert ', "c", "d", "e", "f", "g", "h"' in text
    path.write_text(text.replace(', "c", "d", "e", "f", "g", "h"', ""))  # 2 characters left
    tok = CharTokenizer()
    with pytest.warns(OeMDMWarning, match=f"{path}.*sha256 does not match"):
        fit_tokenizer(ds, tok, cache)
    assert tok.state()["chars"] == list("abcdefgh")


def test_an_edited_checkpoint_tokenizer_is_refused_by_eval(tmp_path, capsys):
    assert main(["train", *text_run(tmp_path)]) == 0
    path = tmp_path / "run" / "checkpoint" / "tokenizer.json"
    record = json.loads(path.read_text())
    record["state"]["chars"] = record["state"]["chars"][:2]
    path.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "sha256 does not match" in err


def test_a_checkpoint_without_checksums_still_loads(tmp_path, capsys):
    assert main(["train", *text_run(tmp_path)]) == 0
    # as older oemdm wrote it
    (tmp_path / "run" / "checkpoint" / "checksums.json").unlink(missing_ok=True)
    assert main(["eval", str(tmp_path / "run"), "--no-progress"]) == 0


def test_resume_refuses_changed_training_data(tmp_path, capsys):
    args = text_run(tmp_path, "training.checkpoint_every=2")
    assert main(["train", *args, "--set", "training.stop_after=2"]) == 0
    data = tmp_path / "corpus.txt"
    data.write_text(data.read_text().replace("lazy", "LAZY"))  # same size, other text
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "refusing to resume" in err and "training data are not those of the checkpoint" in err
    assert "text-files" in err and len(err.splitlines()) == 1
