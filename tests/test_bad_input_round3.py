"""Bad input of issue 24, item 7: one line naming the value or the file, valid JSON, and a
quiet exit on a closed pipe."""

from __future__ import annotations

import gzip
import json
import lzma
import subprocess
import sys

import pytest
from conftest import tiny_run

from oemdm_core.cli import main
from oemdm_core.errors import ConfigError
from oemdm_core.runtime.experiment import load_config


def as_args(overrides: list[str]) -> list[str]:
    return [a for item in overrides for a in ("--set", item)]


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("training.lr=.inf", "training.lr"),
        ("training.lr=.nan", "training.lr"),
        ("training.weight_decay=.inf", "training.weight_decay"),
        ("model.order={name: lomdm, c1: .inf}", "model.order.c1"),
        ("model.schedule={name: polynomial, p: .inf}", "model.schedule.p"),
    ],
)
def test_infinite_numbers_are_refused(override, path, capsys):
    assert main(["train", "--set", override]) == 2  # refused before any data is read
    err = capsys.readouterr().err
    assert f"{path}: got" in err and "finite number" in err


@pytest.mark.parametrize("betas", ["[0.9, 1.0]", "[-0.1, 0.9]", "[0.9, 1.5]"])
def test_betas_outside_0_1_are_refused(betas):
    with pytest.raises(ConfigError, match=r"training.betas.[01]: got"):
        load_config(overrides=[f"training.betas={betas}"])
    assert load_config(overrides=["training.betas=[0.0, 0.999]"]).training.betas == (0.0, 0.999)


def test_eval_json_never_writes_nan(tmp_path):
    # one evaluation sequence: its standard error is undefined
    overrides = tiny_run(tmp_path, "run", "training.steps=1", "evaluation.max_sequences=1")
    assert main(["train", *as_args(overrides)]) == 0
    out = tmp_path / "eval.json"
    assert main(["eval", str(tmp_path / "run"), "--no-progress", "--json", str(out)]) == 0
    text = out.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))
    assert data["stderr_bits"] is None


@pytest.mark.parametrize("suffix", [".gz", ".xz"])
def test_truncated_compressed_data_names_the_file(tmp_path, capsys, suffix):
    compress = {".gz": gzip.compress, ".xz": lzma.compress}[suffix]
    data = compress(b"some text " * 2000)
    path = tmp_path / f"corpus.txt{suffix}"
    path.write_bytes(data[: len(data) // 2])
    overrides = tiny_run(tmp_path, "run", f"data.dataset={{name: text-files, paths: ['{path}']}}")
    assert main(["train", *as_args(overrides)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "truncated or corrupt" in err and len(err.splitlines()) == 1


def test_bad_bytes_in_metrics_name_the_file_on_resume(tmp_path, capsys):
    overrides = tiny_run(tmp_path, "run", "training.stop_after=2")
    assert main(["train", *as_args(overrides)]) == 0
    metrics = tmp_path / "run" / "metrics.jsonl"
    before = metrics.read_bytes() + b"\xff\xfe{}\n"
    metrics.write_bytes(before)
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{metrics}: line 4 is not UTF-8 text" in err
    assert metrics.read_bytes() == before


def test_padded_protocol_warns_when_it_cuts_one_long_document(tmp_path, capsys):
    path = tmp_path / "one.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 50)
    overrides = tiny_run(
        tmp_path,
        "run",
        f"data.dataset={{name: text-files, paths: ['{path}']}}",
        "data.protocol=padded",
        "training.steps=1",
    )
    assert main(["train", *as_args(overrides)]) == 0
    err = capsys.readouterr().err
    assert (
        "oemdm: warning: data.protocol: 'padded' keeps only 16 of the 2025 tokens" in err
    )  # 90 % of 2250
    assert "split 'train'" in err and "data.split_lines=true" in err


def test_sample_into_a_closed_pipe_exits_quietly(tmp_path):
    overrides = tiny_run(tmp_path, "run", "training.steps=1")
    assert main(["train", *as_args(overrides)]) == 0
    sample = subprocess.Popen(
        [sys.executable, "-m", "oemdm_core.cli", "sample", str(tmp_path / "run"), "-n", "64"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    sample.stdout.readline()
    sample.stdout.close()  # what `| head -1` does after its line
    err = sample.stderr.read().decode()
    assert sample.wait(timeout=120) == 0, err
    assert "BrokenPipe" not in err and "Traceback" not in err and "error" not in err
