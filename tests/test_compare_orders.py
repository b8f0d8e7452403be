"""benchmarks/compare_orders.py and synthetic_order_task.py: a tiny end-to-end run with resume,
the missing-corpus message, job planning, measured passes and the synthetic task's checks."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import compare_orders as co  # noqa: E402
import synthetic_order_task as syn  # noqa: E402
from compare_orders_eval import importance_sampled  # noqa: E402
from compare_orders_models import (  # noqa: E402
    PROFILES,
    Profile,
    experiment_config,
    load_trained,
    matched_steps,
    model_specs,
    passes_per_step,
)

TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good "
    "fortune, must be in want of a wife. However little known the feelings or views of such "
    "a man may be on his first entering a neighbourhood, this truth is so well fixed.\n"
)

TINY = Profile(
    "test",
    {"preset": "tiny", "d_model": 16, "n_layers": 1, "n_heads": 2},
    length=16,
    batch_size=4,
    steps=2,
    seeds=(0,),
    eval_sequences=4,
    num_times=1,
    bound_steps=16,
    num_samples=2,
    sample_steps=4,
    device="cpu",
)


def test_missing_corpus_names_the_path_and_the_flag(tmp_path, capsys):
    missing = tmp_path / "nowhere.txt.xz"
    code = co.main(["--corpus", str(missing), "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(missing) in err and "--corpus PATH" in err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_missing_default_corpus_names_the_default_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(co, "REPO", tmp_path / "repo")
    assert co.main(["--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "../shared/data/austen.txt.xz" in err and "--corpus" in err


def test_plan_gives_matched_compute_as_extra_steps():
    specs = model_specs()
    passes = {"ar": 1.0, "mdm": 1.0, "block16": 2.0, "block4": 2.0, "genmd4": 2.0, "lomdm": 3.0}
    jobs = co.plan(specs, ["steps", "matched"], [0], 10, passes)
    steps = {(s, m): n for s, m, _, n in jobs}
    assert steps[("steps", "lomdm")] == 10 and steps[("steps", "ar")] == 10
    assert steps[("matched", "ar")] == 30 and steps[("matched", "block4")] == 15
    assert ("matched", "lomdm") not in steps  # the reference model is its "steps" run
    with_ablation = co.plan(
        {**specs, "lomdm-is": None}, ["steps", "matched"], [0], 10, {**passes, "lomdm-is": 3.0}
    )
    assert ("matched", "lomdm-is", 0, 10) not in with_ablation  # same passes: same run
    assert ("steps", "lomdm-is", 0, 10) in with_ablation
    assert co.same_in_both_settings(["steps"], 10, passes) == set()
    assert [m for s, m, _, _ in jobs if s == "steps"][0] == "ar"  # the judge trains first
    assert matched_steps(10, 3.0, 3.0) == 10


def test_passes_per_step_are_measured():
    specs = model_specs()
    measured = {k: passes_per_step(specs[k]) for k in ("ar", "mdm", "block4", "lomdm")}
    assert measured == pytest.approx({"ar": 1.0, "mdm": 1.0, "block4": 2.0, "lomdm": 7 / 3})


def test_gpu_profile_is_a_valid_experiment(tmp_path):
    for name in ("gpu-owt", "gpu-lm1b"):
        cfg = experiment_config(
            PROFILES[name], model_specs()["lomdm"], 10, 0, tmp_path, None, tmp_path, False
        )
        assert cfg.model.backbone.options["preset"] == "base"
        assert cfg.data.dataset.name == "hf" and cfg.training.device == "cuda"


def test_tiny_run_resumes_after_one_model(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 6)
    specs = {k: v for k, v in model_specs().items() if k in ("ar", "mdm")}
    out = tmp_path / "out"
    messages: list[str] = []

    first, complete = co.run_all(
        TINY, specs, ["steps"], out, corpus, max_models=1, progress=False, log=messages.append
    )
    assert not complete and [r.model for r in first] == ["ar"]
    done = co.result_path(out, "steps", "ar", 0)
    stamp = done.stat().st_mtime_ns
    assert not co.result_path(out, "steps", "mdm", 0).exists()

    messages.clear()
    results, complete = co.run_all(
        TINY, specs, ["steps"], out, corpus, progress=False, log=messages.append
    )
    assert complete and [r.model for r in results] == ["ar", "mdm"]
    assert done.stat().st_mtime_ns == stamp  # the finished model was not retrained
    assert any("finished before: steps/ar/seed0" in m for m in messages)
    assert sum("training" in m for m in messages) == 1

    ar = results[0]
    with torch.no_grad():
        passage = torch.tensor(ar.passage_tokens)[None]  # [1, L]
        exact = float(load_trained(Path(ar.run_dir)).nelbo(passage).total)
    assert ar.test_bpt_mc == pytest.approx(ar.bound_bpt_mc, rel=1e-6)  # AR: L_T = L for T = L
    first = importance_sampled(
        load_trained(Path(ar.run_dir)), [torch.tensor([ar.passage_tokens])], 2, proposal=False
    )[0]
    assert first == pytest.approx(exact / (16 * math.log(2)), rel=1e-6)  # teacher forcing: exact
    assert results[1].test_bpt_mc_stderr > 0

    # A result written before the Monte Carlo metrics existed is completed on the next run.
    path = co.result_path(out, "steps", "mdm", 0)
    data = json.loads(path.read_text())
    for key in (
        "test_bpt_mc",
        "test_bpt_mc_stderr",
        "bound_bpt_mc",
        "bound_bpt_mc_stderr",
        "mc_method",
    ):
        del data[key]
    path.write_text(json.dumps(data))
    again, _ = co.run_all(TINY, specs, ["steps"], out, corpus, progress=False, log=messages.append)
    assert again[1].test_bpt_mc == pytest.approx(results[1].test_bpt_mc, rel=1e-6)
    assert json.loads(path.read_text())["test_bpt_mc"] is not None
    assert ar.passes_per_step == 1.0 and ar.steps == 2 and ar.curve
    assert len(ar.sample_tokens) == 2 and len(ar.sample_tokens[0]) == 16

    rows = co.score_samples(results)
    assert all(r["gen_ppl"] > 1 for r in rows)
    report = co.write_report(out, rows, specs, ["steps"], "## test")
    text = report.read_text()
    assert "| ar | 1 |" in text and "| mdm | 1 |" in text
    assert (out / "learning_curves.png").is_file() and (out / "generation_order.png").is_file()


def test_synthetic_sequences_are_valid_and_checks_detect_errors():
    rows = syn.make_sequences(5)
    assert rows.shape == (5, 2 * syn.DIGITS)
    texts = ["".join(map(str, r)) for r in rows]
    assert all(syn.is_valid(t) for t in texts)
    broken = texts[0][:-1] + str((int(texts[0][-1]) + 1) % 10)
    assert not syn.is_valid(broken) and not syn.is_valid(texts[0][:-1])
    n = syn.DIGITS
    second_first = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])[None]  # [1, 2n]
    assert syn.second_half_first(second_first) == 1.0
    assert syn.second_half_first(torch.arange(2 * n)[None]) == 0.0
    assert syn.is_valid("123" + "653", digits=3)  # 1+2+3, 2+3, 3
    assert not syn.is_valid("123" + "631", digits=3)  # running sums reversed: the old task
    ties = torch.cat([torch.zeros(n), torch.ones(n)])[None]  # the sums all in one step
    assert syn.sums_order_correlation(ties) == 0.0 and syn.second_half_first(ties) == 0.0
    assert syn.second_half_first(1 - ties) == 1.0
    right_to_left = torch.cat([torch.arange(n), torch.arange(2 * n - 1, n - 1, -1)])[None]
    assert syn.sums_order_correlation(right_to_left) == pytest.approx(-1.0)
    assert syn.sums_order_correlation(torch.arange(2 * n)[None]) == pytest.approx(1.0)


def test_synthetic_task_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "syn"
    args = ["--steps", "2", "--seeds", "0", "--models", "ar,lomdm", "--settings", "steps"]
    assert syn.main([*args, "--out", str(out), "--no-progress", "--workers", "1"]) == 0
    text = (out / "results.md").read_text()
    assert (
        "digits | suffix sums" in text and "| lomdm | 1 | 2 | 2 |" in text
    )  # 2⅓ passes per step, printed as 2
    assert (out / "mean_rank_steps.png").is_file() and (out / "mean_w_steps.png").is_file()
    rows = {r["model"]: r for r in json.loads((out / "results.json").read_text())}
    assert rows["ar"]["sums_order_corr"] == pytest.approx(1.0)  # AR generates left to right
    assert rows["lomdm"]["w_gap"] is not None and rows["ar"]["w_gap"] is None


def _spread_lomdm():
    """A tiny LoMDM whose exponents w spread over (0.05, 1.35) (scaled-up forward head)."""
    from compare_orders_models import OeMDM

    torch.manual_seed(0)
    model = OeMDM.from_config(
        {
            "vocab_size": 3,
            "length": 4,
            "backbone": {"name": "transformer", "preset": "tiny"},
            "order": {"name": "lomdm", "scheduler": "linear"},
            "schedule": {"name": "linear"},
        }
    )
    x = torch.tensor([[0, 2, 1, 1]])
    with torch.no_grad():  # logits spread over ±4 on x: w spans most of (0.05, 1.35)
        features = model.clean_features(x)
        for head in (model.order.forward_head, model.order.reverse_head):
            logits = head(features).squeeze(-1)
            head.weight.mul_(4.0 / logits.std())
            head.bias.sub_(head(features).squeeze(-1).mean())
    return model.eval()


def test_importance_sampled_bound_is_unbiased_for_exponents_below_one_half():
    from oemdm_core.nelbo.exact import exact_discrete_nelbo, exact_nelbo

    model = _spread_lomdm()
    x = torch.tensor([[0, 2, 1, 1]])
    w = model.forward_schedule(x).w
    assert float(w.min().detach()) < 0.5  # the singular regime
    scale = 4 * math.log(2.0)
    batch = [x.repeat(256, 1)]
    exact = float(exact_discrete_nelbo(model, x, steps=8).total.detach()) / scale
    mean, se = importance_sampled(model, batch, draws=4, steps=8)
    assert abs(mean - exact) < 4 * se
    exact = float(exact_nelbo(model, x).total.detach()) / scale
    mean, se = importance_sampled(model, batch, draws=4)
    assert abs(mean - exact) < 4 * se


def test_a_model_interrupted_mid_training_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    import compare_orders_models as models

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 6)
    specs = {"mdm": model_specs()["mdm"]}
    out = tmp_path / "out"
    profile = Profile(**{**vars(TINY), "steps": 4})  # checkpoints every step
    real_fit = models.fit

    def interrupt_at_step_2(step, model):
        if step == 2:
            raise KeyboardInterrupt

    def failing_fit(cfg, registry, resume=None):
        return real_fit(cfg, registry, resume=resume, on_step=interrupt_at_step_2)

    monkeypatch.setattr(models, "fit", failing_fit)
    with pytest.raises(KeyboardInterrupt):
        co.run_all(profile, specs, ["steps"], out, corpus, progress=False, log=lambda m: None)
    assert not co.result_path(out, "steps", "mdm", 0).exists()

    monkeypatch.setattr(models, "fit", real_fit)
    results, complete = co.run_all(
        profile, specs, ["steps"], out, corpus, progress=False, log=lambda m: None
    )
    assert complete and results[0].resumed and results[0].steps == 4
    assert [s for s, _ in results[0].curve][-1] == 4


def test_worker_processes_give_the_serial_results(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 6)
    specs = {k: v for k, v in model_specs().items() if k in ("ar", "mdm")}
    runs = {}
    for workers in (1, 2):
        messages: list[str] = []
        runs[workers], complete = co.run_all(
            TINY,
            specs,
            ["steps"],
            tmp_path / f"out{workers}",
            corpus,
            progress=False,
            log=messages.append,
            workers=workers,
        )
        assert complete
    serial, parallel = runs[1], runs[2]
    assert [r.model for r in parallel] == ["ar", "mdm"]  # plan order, whatever finished first
    for a, b in zip(serial, parallel, strict=True):
        assert b.test_bpt == a.test_bpt and b.test_bpt_mc == a.test_bpt_mc
        assert b.sample_tokens == a.sample_tokens
    assert co.result_path(tmp_path / "out2", "steps", "mdm", 0).is_file()
    assert sum(m.startswith("finished steps/") for m in messages) == 2


def test_workers_option_rejects_bad_values():
    assert co.parse_workers("3", "cpu") == 3
    assert co.parse_workers("auto", "cuda") == 1
    assert 1 <= co.parse_workers("auto", "cpu") <= 4
    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit, match=f"--workers: got '{bad}'; valid: auto"):
            co.parse_workers(bad, "cpu")
    assert co.parse_settings("matched, steps") == ["matched", "steps"]
    for bad in ("", "step", "steps,equal"):
        with pytest.raises(SystemExit, match="--settings: got .*; valid: steps, matched"):
            co.parse_settings(bad)
    with pytest.raises(SystemExit, match="--settings: got 'steps,equal'"):
        syn.main(["--settings", "steps,equal", "--out", "unused"])


def test_ablation_models_are_selected_only_by_name(tmp_path):
    from compare_orders_models import select_specs

    specs = model_specs()
    assert select_specs(specs, None) is specs and "lomdm-is" not in specs
    chosen = select_specs(specs, "ar, lomdm-is")
    assert list(chosen) == ["ar", "lomdm-is"]
    cfg = experiment_config(
        TINY, chosen["lomdm-is"], 2, 0, tmp_path / "run", tmp_path / "c.txt", tmp_path, False
    )
    assert cfg.model.estimator.name == "generic"
    assert cfg.model.estimator.options["times"] == "importance"
    with pytest.raises(SystemExit, match=r"--models: unknown \['lomdm_is'\]; valid: .*lomdm-is"):
        select_specs(specs, "lomdm_is")


def test_average_rank_shares_ties():
    from compare_orders_report import average_rank

    order = torch.tensor([[3, 1, 1, 0], [0, 1, 2, 3]])  # step at which each position appeared
    expected = torch.tensor([[3.0, 1.5, 1.5, 0.0], [0.0, 1.0, 2.0, 3.0]])
    assert torch.equal(average_rank(order), expected)
