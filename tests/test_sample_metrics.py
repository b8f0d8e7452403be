"""Sample metrics on hand-computable inputs."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import tiny_model

from oemdm_core.runtime.evaluation.sample_metrics import (
    generative_perplexity,
    repetition_rate,
    unigram_entropy,
)


def test_unigram_entropy_by_hand():
    tokens = torch.tensor([[0, 0, 0, 0], [0, 1, 2, 3], [0, 0, 1, 1], [5, 5, 5, 7]])
    expected = torch.tensor([0.0, 2.0, 1.0, -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))])
    torch.testing.assert_close(unigram_entropy(tokens), expected.double())
    # lengths: only [0, 1] of row 1 and nothing of row 0 count
    got = unigram_entropy(tokens[:2], lengths=torch.tensor([0, 2]))
    torch.testing.assert_close(got, torch.tensor([0.0, 1.0], dtype=torch.float64))


def test_repetition_rate_by_hand():
    tokens = torch.tensor([[1, 2, 1, 2, 1, 2], [1, 2, 3, 4, 5, 6], [7, 7, 7, 7, 7, 7]])
    # bigrams of row 0: 12 21 12 21 12 → 2 distinct of 5 → 1 − 2/5
    expected = torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64)
    torch.testing.assert_close(repetition_rate(tokens, n=2), expected)
    # 4-grams of row 0: 1212 2121 1212 → 1 − 2/3; shorter than n → 0
    torch.testing.assert_close(repetition_rate(tokens[:1], n=4)[0], torch.tensor(1 / 3).double())
    torch.testing.assert_close(
        repetition_rate(tokens[:1], n=4, lengths=torch.tensor([3])), torch.zeros(1).double()
    )
    with pytest.raises(ValueError, match="n must be"):
        repetition_rate(tokens, n=0)


def test_generative_perplexity_is_the_exact_ar_likelihood():
    judge = tiny_model("ar", vocab_size=2, length=3, attention="causal")
    x = torch.tensor(list(itertools.product(range(2), repeat=3)))
    result = generative_perplexity(x, judge, batch_size=3)
    assert float(torch.exp(-result.nll).sum()) == pytest.approx(
        1.0, abs=1e-6
    )  # a distribution (float32 logits)
    torch.testing.assert_close(result.nll.float(), judge.nelbo(x).total, atol=1e-5, rtol=1e-5)
    mean = float(result.nll.sum()) / x.numel()
    assert result.perplexity == pytest.approx(math.exp(mean))
    assert result.bits_per_token == pytest.approx(mean / math.log(2))
    assert result.tokens.tolist() == [3] * 8
    # lengths: a prefix's NLL is the sum of the first terms
    short = generative_perplexity(x, judge, lengths=torch.full((8,), 2))
    prefix = generative_perplexity(
        x[::2, :2], tiny_model("ar", vocab_size=2, length=2, attention="causal")
    )
    torch.testing.assert_close(short.nll[::2], prefix.nll)


def test_generative_perplexity_rejects_bad_judges_and_samples():
    x = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="order 'mdm'.*'bidirectional'"):
        generative_perplexity(x, tiny_model("mdm", length=4))
    judge = tiny_model("ar", vocab_size=3, length=4, attention="causal")
    with pytest.raises(ValueError, match="vocabulary"):
        generative_perplexity(x + 3, judge)
    with pytest.raises(ValueError, match="max_length"):
        generative_perplexity(torch.zeros(2, 6, dtype=torch.long), judge)
    with pytest.raises(ValueError, match="lengths"):
        generative_perplexity(x, judge, lengths=torch.tensor([5, 1]))


def test_sample_quality_is_seeded_and_uses_the_judge():
    from oemdm_core import registry
    from oemdm_core.runtime.evaluation.sample_metrics import sample_quality

    model = tiny_model("mdm", vocab_size=3, length=6)
    judge = tiny_model("ar", vocab_size=3, length=6, attention="causal")
    sampler = registry.build("sampler", "ancestral", steps=4)
    a = sample_quality(model, sampler, 5, judge=judge, seed=3)
    assert a == sample_quality(model, sampler, 5, judge=judge, seed=3)
    assert set(a) >= {"sample_unigram_entropy_bits", "gen_perplexity", "gen_bits_per_token"}
    assert 0 <= a["sample_unigram_entropy_bits"] <= math.log2(3)
    assert a["gen_perplexity"] == pytest.approx(2 ** a["gen_bits_per_token"])
    assert "gen_perplexity" not in sample_quality(model, sampler, 2)


def test_eval_command_reports_sample_metrics(tmp_path, capsys):
    import json

    from oemdm_core.cli import main
    from oemdm_core.runtime.experiment import load_config
    from oemdm_core.runtime.trainer import fit

    def run(name: str, *model: str) -> str:
        overrides = [
            *model,
            "data.length=16",
            f"data.cache_dir={tmp_path / 'cache'}",
            "training.steps=1",
            "training.batch_size=2",
            "training.eval_every=0",
            "training.checkpoint_every=0",
            "training.progress=false",
            f"training.run_dir={tmp_path / name}",
            "evaluation.max_sequences=2",
            "evaluation.num_times=1",
            "sampling.num_samples=0",
            "sampling.sampler={name: ancestral, steps: 4}",
        ]
        fit(load_config(overrides=overrides))
        return str(tmp_path / name)

    model = run("mdm", "model.order=mdm", "model.backbone={name: transformer, preset: tiny}")
    judge = run(
        "ar",
        "model.order=ar",
        "model.backbone={name: transformer, preset: tiny, attention: causal}",
    )
    out = tmp_path / "eval.json"
    argv = ["eval", model, "--samples", "2", "--judge", judge, "--json", str(out)]
    assert main(argv) == 0
    metrics = json.loads(out.read_text())
    assert metrics["samples"] == 2 and metrics["gen_perplexity"] > 1
    assert "sample_repetition_rate_4gram" in capsys.readouterr().out
