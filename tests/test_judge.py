"""Judges of generative perplexity: a tiny random GPT-2 saved with save_pretrained (through
`transformers`, the optional 'judge' extra), and oemdm AR judges whose tokenizer differs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import tiny_model, tiny_run
from oemdm_data import ByteTokenizer, CharTokenizer

from oemdm_core.cli import main
from oemdm_core.runtime.evaluation.judge import HFJudge, OeMDMJudge
from oemdm_core.runtime.evaluation.sample_metrics import generative_perplexity
from oemdm_core.testing.tiny_gpt2 import write_tiny_gpt2

CORPUS = "the cat sat on the mat. the dog sat on the log. " * 30


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A tiny random GPT-2 and a byte-level BPE tokenizer trained here, saved like a hub
    checkpoint: config.json, model.safetensors, tokenizer files."""
    pytest.importorskip("transformers")
    return write_tiny_gpt2(tmp_path_factory.mktemp("gpt2"), CORPUS, 300, n_positions=16, n_embd=16)


def manual_nll(judge: HFJudge, ids: list[int]) -> float:
    x = torch.tensor([[judge.bos, *ids]])
    with torch.no_grad():
        logp = torch.log_softmax(judge.model(input_ids=x).logits.double(), -1)
    return float(-logp[0, :-1].gather(-1, x[0, 1:, None]).sum())


def test_hf_judge_scores_every_token_after_bos_in_context_sized_chunks(gpt2_dir):
    judge = HFJudge(gpt2_dir)
    assert judge.context == 16 and judge.bos == judge.tokenizer.eos_token_id
    short, long = "the cat sat", "the dog sat on the log and the cat sat on the mat again, " * 2
    score = judge.score_texts([short, long])
    ids = judge.tokenizer(short, add_special_tokens=False)["input_ids"]
    assert int(score.tokens[0]) == len(ids)
    assert math.isclose(float(score.nll[0]), manual_nll(judge, ids), rel_tol=1e-9)
    long_ids = judge.tokenizer(long, add_special_tokens=False)["input_ids"]
    assert len(long_ids) > 15 and int(score.tokens[1]) == len(long_ids)
    chunks = [long_ids[i : i + 15] for i in range(0, len(long_ids), 15)]
    assert math.isclose(
        float(score.nll[1]), sum(manual_nll(judge, c) for c in chunks), rel_tol=1e-9
    )
    mean = float(score.nll.sum()) / int(score.tokens.sum())
    assert math.isclose(score.perplexity, math.exp(mean))


def test_samples_are_decoded_and_re_encoded_with_the_judges_tokenizer(gpt2_dir):
    judge = HFJudge(gpt2_dir)
    char = CharTokenizer()
    char.fit(CORPUS)
    texts = ["the cat sat on", "a dog.  log   "]
    samples = torch.tensor([char.encode(t) for t in texts])
    via_samples = judge.score_samples(samples, None, char)
    direct = judge.score_texts(texts)
    assert torch.equal(via_samples.nll, direct.nll) and torch.equal(
        via_samples.tokens, direct.tokens
    )


def test_oemdm_judge_with_another_tokenizer_goes_through_text():
    judge_model = tiny_model("ar", vocab_size=256, length=16, attention="causal")
    judge = OeMDMJudge(judge_model, ByteTokenizer())
    char = CharTokenizer()
    char.fit("abcdé ")
    samples = torch.tensor([char.encode("abé cd"), char.encode("dcba é")])
    score = judge.score_samples(samples, None, char)
    as_bytes = torch.tensor([list("abé cd".encode()), list("dcba é".encode())])
    expected = generative_perplexity(as_bytes, judge_model)
    torch.testing.assert_close(score.nll, expected.nll)
    assert score.tokens.tolist() == [7, 7]  # é is two bytes: the judge's own tokens
    # the same tokenizer: the ids are scored as they are
    same = OeMDMJudge(
        tiny_model("ar", vocab_size=char.vocab_size, length=8, attention="causal"), char
    )
    direct = generative_perplexity(samples, same.model)
    torch.testing.assert_close(same.score_samples(samples, None, char).nll, direct.nll)


def test_eval_reports_gen_ppl_entropy_and_samples_with_an_hf_judge(gpt2_dir, tmp_path, capsys):
    args = tiny_run(tmp_path, "run", "sampling.sampler={name: ancestral, steps: 4}")
    assert main(["train", *[a for o in args for a in ("--set", o)]]) == 0
    out = tmp_path / "m.json"
    argv = ["eval", str(tmp_path / "run"), "--max-sequences", "2", "--num-times", "2"]
    remdm = ["--sampler", "remdm", "--sampler-set", "steps=8", "--sampler-set", "eta=0.5"]
    judge_hf = ["--judge", f"hf:{gpt2_dir}", "--json", str(out)]
    assert main([*argv, "--samples", "3", *remdm, *judge_hf]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["samples"] == 3 and metrics["gen_judge_tokens"] > 0
    assert 1 <= metrics["sample_nfe"] <= 8  # the remdm sampler with 8 steps
    assert metrics["gen_perplexity"] > 1 and "sample_unigram_entropy_bits" in metrics
    # an oemdm judge with another tokenizer (byte vs the run's char): through text, not ids
    judge = tmp_path / "judge"
    args = tiny_run(
        tmp_path,
        "judge",
        "model.order=ar",
        "data.tokenizer=byte",
        "model.backbone={name: transformer, preset: tiny, attention: causal}",
    )
    assert main(["train", *[a for o in args for a in ("--set", o)]]) == 0
    assert main([*argv, "--samples", "2", "--judge", str(judge), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["gen_judge_tokens"] >= 2 * 16


def test_judge_directory_without_model_or_tokenizer_is_refused(gpt2_dir, tmp_path, capsys):
    (tmp_path / "config.json").write_text((gpt2_dir / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes((gpt2_dir / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="lacks a tokenizer"):
        HFJudge(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="lacks model weights .*, a tokenizer"):
        HFJudge(tmp_path)
    with pytest.raises(FileNotFoundError, match="no directory"):
        HFJudge(tmp_path / "nothing")
