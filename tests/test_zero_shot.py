"""Zero-shot evaluation (`oemdm eval CKPT --data SPEC …`), exact-order mode from the command
line, and the bad-input messages of both."""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import tiny_run
from oemdm_data import CharTokenizer, TextFiles

from oemdm_core import registry
from oemdm_core.cli import main
from oemdm_core.runtime.evaluation.data_spec import parse_data_spec
from oemdm_core.runtime.evaluation.likelihood import evaluate
from oemdm_core.runtime.evaluation.zero_shot import encode_texts, prepare, zero_shot

ODD = "Hello wörld 😀 ж, and enough further text to fill a few sequences of sixteen. " * 3


def train(tmp_path, run: str, *extra: str) -> str:
    args = tiny_run(tmp_path, run, *extra)
    assert main(["train", *[a for o in args for a in ("--set", o)]]) == 0
    return str(tmp_path / run)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zero_shot")
    packed = train(tmp, "packed")
    padded = train(tmp, "padded", "data.protocol=padded", "data.split_lines=true")
    (tmp / "odd.txt").write_text(ODD)
    return tmp, packed, padded


def eval_cli(*args: str) -> int:
    return main(["eval", *args])


def test_one_table_over_several_datasets_and_json(runs, capsys):
    tmp, packed, _ = runs
    odd = str(tmp / "odd.txt")
    out = tmp / "zs.json"
    specs = ["pydoc", odd, f"text-files:{{paths: [{odd}], test: 0.5}}@test", "pydoc@all"]
    argv = [packed, "--max-sequences", "4", "--json", str(out)]
    assert eval_cli(*argv, *[a for s in specs for a in ("--data", s)]) == 0
    table = capsys.readouterr().out
    for column in ("dataset", "tokens", "bits/token", "perplexity", "± SE", "unrepr."):
        assert column in table
    rows = json.loads(out.read_text())["results"]
    assert [r["dataset"] for r in rows] == specs
    assert [r["split"] for r in rows] == ["validation", "all", "test", "all"]
    assert all(r["tokens"] == r["sequences"] * 16 and r["sequences"] <= 4 for r in rows)
    # the char vocabulary fitted on pydoc lacks ö, 😀 and ж: counted, never silently mapped
    assert rows[1]["unrepresentable"] == 9 and rows[1]["handling"] == "lossy"
    assert rows[1]["unrepresentable_chars"] == {"ö": 3, "😀": 3, "ж": 3}
    assert "9 (lossy" in table
    assert rows[0]["unrepresentable"] == 0 and rows[0]["bits_per_char"] == rows[0]["bits_per_token"]


def test_the_same_numbers_as_evaluating_the_sequences_directly(runs):
    tmp, packed, _ = runs
    from oemdm_core.cli.eval import load

    model, cfg, data, _ = load(packed, registry)
    spec = parse_data_spec(str(tmp / "odd.txt"), registry)
    prepared = prepare([spec], data.tokenizer, model.vocab_size, 16, "packed")
    rows = zero_shot(prepared, lambda b: evaluate(model, b, num_times=2), 8, None)
    ids = torch.tensor(data.tokenizer.encode(ODD))
    n = len(ids) // 16
    direct = evaluate(model, list(ids[: n * 16].view(n, 16).split(8)), num_times=2)
    assert rows[0].bits_per_token == direct.bits_per_token and rows[0].sequences == n


def test_tokenizers_that_refuse_characters_have_them_dropped_and_reported():
    tok = CharTokenizer(unknown=False)
    tok.fit("abc ")
    encoded = encode_texts(["abc xyz abc", "cab"], tok)
    assert encoded.handling == "dropped" and encoded.unrepresentable == {"x": 1, "y": 1, "z": 1}
    assert tok.decode(encoded.tokens.tolist()) == "abc  abccab"
    assert encoded.offsets.tolist() == [0, 8, 11] and encoded.characters == 14


def test_local_parquet_and_saved_datasets(runs, capsys):
    datasets = pytest.importorskip("datasets")
    tmp, packed, _ = runs
    docs = {"text": [ODD[:60], ODD[60:140], "the end of the documents."]}
    datasets.Dataset.from_dict(docs).to_parquet(str(tmp / "docs.parquet"))
    datasets.Dataset.from_dict(docs).save_to_disk(str(tmp / "one"))
    with pytest.raises(ValueError, match="single saved Dataset is evaluated whole"):
        parse_data_spec(f"{tmp / 'one'}@test", registry)
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(docs), "test": datasets.Dataset.from_dict(docs)}
    ).save_to_disk(str(tmp / "dict"))
    out = tmp / "hf.json"
    specs = [str(tmp / "docs.parquet"), str(tmp / "one"), f"{tmp / 'dict'}@test"]
    assert eval_cli(packed, "--json", str(out), *[a for s in specs for a in ("--data", s)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["split"] for r in rows] == ["all", "all", "test"]
    assert len({r["bits_per_token"] for r in rows}) == 1  # the same documents each time
    assert rows[0]["characters"] == sum(map(len, docs["text"]))


def test_padded_protocol_and_its_refusal_for_packed_models(runs, capsys):
    tmp, packed, padded = runs
    odd = str(tmp / "odd.txt")
    out = tmp / "padded.json"
    assert eval_cli(padded, "--data", odd, "--data", "pydoc", "--json", str(out)) == 0
    rows = json.loads(out.read_text())["results"]
    assert {r["protocol"] for r in rows} == {"padded"} and rows[0]["bits_per_char"] is None
    assert eval_cli(padded, "--data", odd, "--protocol", "packed") == 0
    capsys.readouterr()
    assert eval_cli(packed, "--data", odd, "--protocol", "padded") == 2
    assert "padded protocol needs a pad id" in capsys.readouterr().err


def test_exact_order_from_the_command_line(runs, capsys):
    tmp, packed, _ = runs
    out = tmp / "exact.json"
    argv = [packed, "--mode", "exact-order", "--scorer", "entropy", "--max-sequences", "3"]
    assert eval_cli(*argv, "--json", str(out)) == 0
    metrics = json.loads(out.read_text())
    assert metrics["mode"] == "exact-order" and metrics["scorer"] == "entropy"
    assert metrics["nelbo_mode"] == "deterministic" and metrics["num_sequences"] == 3
    assert eval_cli(*argv, "--json", str(out)) == 0
    assert json.loads(out.read_text()) == metrics  # no randomness


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--data", "missing.txt"],
            "--data 'missing.txt': no such file or directory, and not a registered dataset",
        ),
        (
            ["--data", "pydoc@later"],
            "unknown split 'later'; valid splits: train, validation, test, all",
        ),
        (["--data", "pydoc:[1, 2]"], "options after ':' must be a mapping"),
        (["--data", "pydoc:{validation: 2}"], r"dataset\[pydoc\].validation: got 2"),
        (["--data", "text-files:{paths: [nope.txt]}"], "data file not found: nope.txt"),
        (["--data", "DIR"], "a directory must be written by `datasets` save_to_disk"),
        (["--data", "FILE@test"], "a file or a single saved Dataset is evaluated whole"),
        (
            ["--mode", "exact-order", "--scorer", "plackett-luce"],
            "scorer 'plackett-luce' is random",
        ),
        (["--scorer", "margin"], "--scorer margin is only used with --mode exact-order"),
        (["--judge", "RUN"], "scores samples: add --samples N"),
        (
            ["--samples", "1", "--sampler", "remdm", "--sampler-set", "eta=3"],
            r"sampler\[remdm\]\.eta: got 3",
        ),
        (["--sampler-set", "steps=3"], "choose the --samples sampler: add --samples N"),
        (["--samples", "1", "--sampler-set", "steps"], "--sampler-set 'steps': expected key=value"),
        (
            ["--samples", "1", "--judge", "hf:DIR"],
            "lacks a model config \\(config.json\\), model weights",
        ),
    ],
)
def test_bad_input_is_one_line_before_any_work(runs, capsys, args, message):
    tmp, packed, _ = runs
    args = [
        a.replace("DIR", str(tmp)).replace("FILE", str(tmp / "odd.txt")).replace("RUN", packed)
        for a in args
    ]
    assert eval_cli(packed, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.search(message, err), err


def test_per_step_is_checked_by_the_argument_parser(runs, capsys):
    _, packed, _ = runs
    with pytest.raises(SystemExit) as exc:
        eval_cli(packed, "--mode", "exact-order", "--per-step", "0")
    assert exc.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith("argument --per-step: got 0; must be an integer >= 1")


def test_a_dataset_smaller_than_one_sequence_is_named(tmp_path):
    (tmp_path / "tiny.txt").write_text("abc")
    spec = parse_data_spec(str(tmp_path / "tiny.txt"), registry)
    tok = CharTokenizer()
    tok.fit("abc")
    with pytest.raises(
        ValueError, match="tiny.txt.*3 tokens in split 'all', fewer than one sequence of length 16"
    ):
        prepare([spec], tok, tok.vocab_size, 16, "packed")
    assert isinstance(spec.dataset, TextFiles)
