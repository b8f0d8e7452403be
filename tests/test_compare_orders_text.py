"""benchmarks/compare_orders_text.py: the text measurements of the paper-cpu profile (sampler
steps per T, token classes, where a learned order puts each class) and a tiny end-to-end run
of the zero-shot, gen-PPL and order-on-text stage."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from oemdm_data import CharTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import compare_orders as co  # noqa: E402
import compare_orders_text as ct  # noqa: E402
from compare_orders_models import PROFILES, model_specs  # noqa: E402
from test_compare_orders import TEXT, TINY  # noqa: E402


def test_sampler_steps_follow_the_budget_of_network_evaluations():
    specs = model_specs((4,))
    assert ct.sampler_at(specs["mdm"].sampler, 256, 128) == {"name": "ancestral", "steps": 256}
    # block4 at L = 128: 32 blocks; T = 64 gives 2 inner steps, T = 256 is capped at B = 4
    assert ct.sampler_at(specs["block4"].sampler, 64, 128)["steps"] == 2
    assert ct.sampler_at(specs["block4"].sampler, 256, 128)["steps"] == 4
    assert ct.sampler_at(specs["ar"].sampler, 64, 128) == {"name": "ar"}


def test_token_classes_split_words_by_training_frequency():
    tok = CharTokenizer()
    tok.fit("ab, c.")  # ids (sorted): ' ' 0, ',' 1, '.' 2, 'a' 3, 'b' 4, 'c' 5
    train = np.array([3, 3, 3, 3, 3, 3, 4, 4, 5, 0, 1, 2])  # a ×6, b ×2, c ×1
    classes = ct.token_classes(tok, train, tok.vocab_size)
    names = [ct.CLASSES[c] for c in classes[:6]]  # id 6: the tokenizer's unknown id
    # 'a' alone covers 6/9 ≥ half the word mass: frequent; b and c are rare
    assert names == ["space", "punctuation", "punctuation", "frequent", "rare", "rare"]
    assert len(classes) == tok.vocab_size


def learned_stub(w: torch.Tensor):
    """A model whose learned order has exponents `w: [B, L]` on every input."""
    return SimpleNamespace(
        order=SimpleNamespace(learned=True),
        device=torch.device("cpu"),
        forward_schedule=lambda x: SimpleNamespace(w=w),
    )


def test_order_by_class_ranks_the_highest_exponent_first():
    x = torch.tensor([[0, 1, 2, 3], [2, 3, 0, 1]])  # token ids
    classes = np.array([0, 1, 2, 3])  # id k is class k
    w = torch.tensor([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])  # left to right
    table, trend, by_position = ct.order_by_class(learned_stub(w), [x], classes)
    assert trend == pytest.approx(1.0)
    assert by_position == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    # id 0 sits at position 0 (rank 0) and at position 2 (rank 2/3): mean 1/3
    assert table["space"]["rank"] == pytest.approx(1 / 3)
    assert table["space"]["share"] == pytest.approx(0.25)
    # per-sequence means 0 and 2/3: SE = stdev / √2 = (√2 / 3) / √2
    assert table["space"]["rank_se"] == pytest.approx(1 / 3)
    fixed = SimpleNamespace(order=SimpleNamespace(learned=False), device=torch.device("cpu"))
    assert ct.order_by_class(fixed, [x], classes) is None


def test_paper_cpu_profile_is_the_issue_s_table():
    profile = PROFILES["paper-cpu"]
    assert profile.models == ("ar", "mdm", "block4", "genmd4", "lomdm")
    assert profile.length == 128 and profile.backbone == {"preset": "small"}
    assert profile.tokenizer == {"name": "bpe", "vocab_size": 2048}
    assert profile.steps >= 3000 and profile.seeds == (0, 1)
    assert sorted({profile.sample_steps, *profile.judge_steps}) == [64, 256]
    repo = Path(__file__).resolve().parents[1]
    assert [(repo / c).name for c in profile.zero_shot] == ["kjv.txt.xz", "shakespeare.txt.xz"]


def test_text_stage_measures_every_job_once(tmp_path):
    corpus, other = tmp_path / "corpus.txt", tmp_path / "other.txt"
    corpus.write_text(TEXT * 6)
    other.write_text(TEXT * 40)  # its test split (5 %) must fill a sequence
    profile = replace(TINY, zero_shot=(str(other),), judge_steps=(8,))
    specs = {k: v for k, v in model_specs().items() if k in ("ar", "lomdm")}
    out = tmp_path / "out"
    results, _ = co.run_all(profile, specs, ["steps"], out, corpus, progress=False)
    logged: list[str] = []
    measured = ct.measure_text(
        results, profile, specs, out, corpus, co.judges(results), logged.append
    )
    assert [m.model for m in measured] == ["ar", "lomdm"] and len(logged) == 2
    ar, lomdm = measured
    assert ar.classes is None and lomdm.classes is not None
    assert sum(v["share"] for v in lomdm.classes.values()) == pytest.approx(1.0)
    assert set(ar.gen) == {"4", "8"} and ar.gen["4"] == ar.gen["8"]  # AR: always L steps
    assert lomdm.gen["4"]["nfe"] <= 4 < lomdm.gen["8"]["nfe"] <= 8
    assert ar.zero_shot["other"]["ppl"] == pytest.approx(
        2 ** ar.zero_shot["other"]["bits_per_token"]
    )

    again = ct.measure_text(results, profile, specs, out, corpus, co.judges(results), logged.append)
    assert len(logged) == 2 and again == measured  # read back, not recomputed

    rows = ct.text_rows(co.score_samples(results), measured)
    columns = co.text_columns(profile, co.table_columns(profile))
    sections = co.text_sections(measured, out, rows, specs, ["steps"])
    text = co.write_report(out, rows, specs, ["steps"], "## t", columns, sections).read_text()
    assert "zero-shot PPL other" in text and "gen. PPL T=8" in text
    assert "Ranking by test perplexity (steps)" in text and "| lomdm | 0 |" in text
    assert (out / "text_order.png").is_file()
