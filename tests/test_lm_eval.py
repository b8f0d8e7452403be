"""The lm-evaluation-harness adapter (`oemdm_core.integrations.lm_eval`): its numbers against
the project's own likelihoods computed here independently, generation with stop strings,
bad model_args, and lm-eval running a tiny local YAML task end to end (offline)."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from conftest import tiny_run

lm_eval = pytest.importorskip(
    "lm_eval", reason="lm-eval is not installed (pip install -e '.[lm-eval]')"
)

from lm_eval.api.instance import Instance  # noqa: E402

from oemdm_core.errors import ConfigError  # noqa: E402
from oemdm_core.integrations.lm_eval import register, with_cpu_default  # noqa: E402
from oemdm_core.integrations.lm_eval.scoring import (  # noqa: E402
    exact_order_logprob,
    nelbo_logprob,
    scoring_windows,
    window_batch,
)
from oemdm_core.runtime.checkpoint.restore import load_checkpoint  # noqa: E402
from oemdm_core.runtime.evaluation.exact_order import exact_order_nll  # noqa: E402
from oemdm_core.runtime.evaluation.likelihood import evaluate, evaluation_times  # noqa: E402
from oemdm_core.runtime.experiment import load_config  # noqa: E402

L = 16  # tiny_run's data.length
ITEMS = [  # a tiny multiple-choice task on pydoc-like text; question + choice fit in L
    {"question": "def f(x):", "choices": [" return", " zzqqj"], "gold": 0},
    {"question": "import os", "choices": ["\n", "QQQQ"], "gold": 1},
    {"question": "class A", "choices": ["(object):", "}}}}]]"], "gold": 0},
    {"question": "for i in", "choices": [" range:", " $$$ %%"], "gold": 0},
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run directories of two 4-step tiny models: `ar` (causal backbone, `ar` sampler) and
    `mdm` (bidirectional, the default ancestral sampler)."""
    from oemdm_core.runtime.trainer import fit

    tmp = tmp_path_factory.mktemp("lm_eval_runs")
    causal = "model.backbone={name: transformer, preset: tiny, attention: causal}"
    fit(
        load_config(
            overrides=tiny_run(tmp, "ar", "model.order=ar", causal, "sampling.sampler={name: ar}")
        )
    )
    fit(load_config(overrides=tiny_run(tmp, "mdm")))
    return {"ar": tmp / "ar", "mdm": tmp / "mdm"}


def adapter(run, **model_args):
    register()
    from lm_eval.api.registry import get_model

    return get_model("oemdm").create_from_arg_obj({"pretrained": str(run), **model_args}, {})


def request(kind, *args):
    return Instance(kind, {}, args, 0)


def encode(data, text):
    return data.tokenizer.encode(text)


@torch.no_grad()
def chain_rule_logprob(model, context: list[int], continuation: list[int]) -> float:
    """Σ_i log p_θ(x^i | x_<i) over the continuation: position i is asked with everything
    before it clean and everything from i on masked, at a time inside i's AR window."""
    x = context + continuation
    total = 0.0
    for i in range(len(context), len(x)):
        z = torch.full((1, L), model.mask_id)
        z[0, :i] = torch.tensor(x[:i])
        t = torch.tensor([(L - i - 0.5) / L])
        logp = torch.log_softmax(model.denoise(z, t).logits.double(), -1)
        total += float(logp[0, i, x[i]])
    return total


def test_scoring_windows_score_each_token_once_after_as_much_text_as_fits():
    ids = list(range(10))
    assert scoring_windows(ids, 7, 4) == [([6], [7, 8, 9])]  # context cut on the left
    assert scoring_windows(ids, 8, 5) == [([5, 6, 7], [8, 9])]
    assert scoring_windows(ids, 0, 4) == [
        ([], [0, 1, 2, 3]),
        ([], [4, 5, 6, 7]),
        ([6, 7], [8, 9]),  # the last chunk after a full-sized context
    ]
    assert scoring_windows(ids, 10, 4) == []
    with pytest.raises(ValueError, match="start must lie in"):
        scoring_windows(ids, 11, 4)


@torch.no_grad()
def test_ar_loglikelihood_is_the_exact_chain_rule_and_greedy_is_decided_per_token(runs):
    lm = adapter(runs["ar"])
    model, _, data, _ = load_checkpoint(str(runs["ar"]))
    assert lm.likelihood == "exact-order"
    context = encode(data, "def f(x):")
    # The greedy continuation, decoded here step by step with argmax.
    greedy = []
    for _ in range(4):
        z = torch.full((1, L), model.mask_id)
        z[0, : len(context) + len(greedy)] = torch.tensor(context + greedy)
        t = torch.tensor([(L - len(context) - len(greedy) - 0.5) / L])
        greedy.append(int(model.denoise(z, t).logits[0, len(context) + len(greedy)].argmax()))
    other = greedy[:3] + [(greedy[3] + 1) % model.vocab_size]
    requests = [request("loglikelihood", "def f(x):", data.decode(c)) for c in (greedy, other)]
    results = lm.loglikelihood(requests)
    for (value, _), continuation in zip(results, (greedy, other), strict=True):
        assert value == pytest.approx(chain_rule_logprob(model, context, continuation), abs=1e-5)
    assert [is_greedy for _, is_greedy in results] == [True, False]
    # The route of every other backbone (one denoiser call per token) agrees.
    batch = window_batch([(context, greedy), (context, other)], L, model.device)
    stepwise = exact_order_logprob(model, batch, lm_scorer())
    assert stepwise.logprob.tolist() == pytest.approx([v for v, _ in results], abs=1e-5)
    assert stepwise.greedy.tolist() == [True, False]


@torch.no_grad()
def test_a_whole_window_matches_the_cores_exact_order_and_nelbo(runs):
    """Without context, a text of exactly L tokens is one window: the adapter's number is
    the core's own likelihood of that sequence (ar: exact order / teacher forcing; mdm: the
    deterministic NELBO of `oemdm eval`)."""
    text = "def main():\n    "
    model, _, data, _ = load_checkpoint(str(runs["ar"]))
    x = torch.tensor([encode(data, text)])
    assert x.shape == (1, L)
    scorer = lm_scorer()
    ar_value = adapter(runs["ar"]).loglikelihood_rolling([request("loglikelihood_rolling", text)])
    assert ar_value[0] == pytest.approx(-float(exact_order_nll(model, x, scorer).nll), abs=1e-4)
    assert ar_value[0] == pytest.approx(-float(model.nelbo(x).total), abs=1e-4)

    model, _, data, _ = load_checkpoint(str(runs["mdm"]))
    lm = adapter(runs["mdm"], num_times=16, seed=0)
    assert lm.likelihood == "nelbo"
    (value,) = lm.loglikelihood_rolling([request("loglikelihood_rolling", text)])
    reference = evaluate(model, [x], mode="deterministic", num_times=16, seed=0)
    assert value == pytest.approx(-reference.nats_per_sequence, rel=1e-6)


def lm_scorer():
    from oemdm_core import registry

    return registry.build("scorer", "confidence")


@pytest.mark.statistical
@torch.no_grad()
def test_the_conditional_nelbo_is_unbiased_for_the_bound_by_enumeration(runs):
    """−NELBO of a 3-token continuation given 9 context tokens (4 trailing positions masked):
    the mean over seeds of the adapter's single-draw-per-time value against the exact
    expectation over the 2^3 masks of the continuation at the same quadrature times."""
    lm = adapter(runs["mdm"], num_times=4)
    model, data = lm.model, lm.data
    # A 4-step model predicts nearly the same everywhere: shake its weights (seeded) so that
    # the continuation's cross-entropy depends on the context and on which positions are masked.
    torch.manual_seed(0)
    for parameter in model.parameters():
        parameter.add_(torch.randn_like(parameter))
    context, continuation = encode(data, "def f(x):"), encode(data, " re")
    n, m = len(context), len(continuation)
    x = torch.zeros(1, L, dtype=torch.long)
    x[0, : n + m] = torch.tensor(context + continuation)
    forward = model.forward_schedule(x)
    reference, num_times = 0.0, lm.options.num_times
    for j in range(num_times):
        t, weight = evaluation_times(1, j, num_times, "deterministic")
        alpha, velocity = forward.alpha(t)[0].double(), forward.velocity(t)[0].double()
        expected = 0.0
        for pattern in itertools.product([False, True], repeat=m):
            masked = torch.zeros(L, dtype=torch.bool)
            masked[n : n + m] = torch.tensor(pattern)
            z = x.clone()
            z[0, masked] = model.mask_id
            z[0, n + m :] = model.mask_id
            prob = math.prod(
                float(1 - alpha[n + k]) if hidden else float(alpha[n + k])
                for k, hidden in enumerate(pattern)
            )
            logp = torch.log_softmax(model.denoise(z, t).logits.double(), -1)[0]
            ce = -logp[torch.arange(L), x[0]]
            expected += prob * float((velocity * ce)[masked].sum())
        reference += float(weight) * expected / num_times
    values = []
    for seed in range(60):
        lm.options.seed = seed
        values.append(lm.loglikelihood([request("loglikelihood", "def f(x):", " re")])[0][0])
    values = torch.tensor(values, dtype=torch.float64)
    stderr = float(values.std() / math.sqrt(len(values)))
    assert abs(float(values.mean()) + reference) < 4 * stderr + 1e-9
    assert all(not greedy for _, greedy in lm.loglikelihood([request("loglikelihood", "a", "b")]))


@torch.no_grad()
def test_the_nelbo_reads_the_context_and_never_the_positions_after_the_window(runs):
    """Same seed, same masks: another context changes the value, another filler after the
    continuation does not (those positions are masked in every state)."""
    lm = adapter(runs["mdm"], num_times=4)
    torch.manual_seed(0)
    for parameter in lm.model.parameters():
        parameter.add_(torch.randn_like(parameter))
    ids = {text: encode(lm.data, text) for text in ("def f(x):", "class Ab:", " re")}
    batch = window_batch(
        [(ids["def f(x):"], ids[" re"]), (ids["class Ab:"], ids[" re"])], L, lm.model.device
    )
    values = nelbo_logprob(lm.model, batch, 4, 0).logprob
    batch.tokens[:, 12:] = 7  # another filler
    assert nelbo_logprob(lm.model, batch, 4, 0).logprob.tolist() == values.tolist()
    assert abs(float(values[0] - values[1])) > 1e-3


def test_generate_until_cuts_at_the_first_stop_string_and_at_max_gen_toks(runs):
    lm = adapter(runs["ar"])
    context = "def f(x):"
    budget = L - len(context)

    def generate(**gen_kwargs):
        return lm.generate_until([request("generate_until", context, gen_kwargs)])[0]

    full = generate(max_gen_toks=budget)
    assert len(full) == budget  # char tokenizer: one character per generated id
    stop = full[3]
    cut = generate(until=[stop, "\x00never"], max_gen_toks=budget)
    assert cut == full[: full.index(stop)] and stop not in cut
    assert generate(until=stop, max_gen_toks=budget) == cut  # a single string works too
    assert generate(max_gen_toks=3) == full[:3]


def test_the_sampler_and_its_steps_come_from_model_args(runs):
    lm = adapter(runs["mdm"], sampler="ancestral", steps=4)
    sampler = lm._sampler(0.0)
    assert (sampler.name, sampler.options.steps, sampler.options.temperature) == (
        "ancestral",
        4,
        0.0,
    )
    (text,) = lm.generate_until(
        [request("generate_until", "def", {"until": ["\n"], "do_sample": False})]
    )
    assert "\n" not in text and len(text) <= L - 3


@pytest.mark.parametrize(
    ("model_args", "message"),
    [
        (
            {"likelihood": "exact"},
            "model_args.likelihood: got 'exact'; expected 'auto', 'exact-order' or 'nelbo'",
        ),
        ({"batchsize": 4}, "model_args.batchsize: unknown key; valid keys: batch_size, device"),
        ({"device": "gpu"}, "model_args.device: got 'gpu'; expected auto, cpu"),
        ({"likelihood": "exact-order", "scorer": "random"}, "scorer 'random' is random"),
        ({"sampler": "nope"}, "nope"),
        ({"steps": 0}, "model_args.steps: got 0; must be >= 1"),
    ],
)
def test_bad_model_args_get_one_line_naming_the_value(runs, model_args, message):
    with pytest.raises((ConfigError, ValueError, LookupError)) as info:
        adapter(runs["mdm"], **model_args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_gen_kwargs_get_one_line(runs):
    lm = adapter(runs["ar"])
    with pytest.raises(ConfigError, match="'num_beams' is not supported by the oemdm model"):
        lm.generate_until([request("generate_until", "a", {"num_beams": 2})])
    with pytest.raises(ConfigError, match="max_gen_toks: got 0; expected an integer >= 1"):
        lm.generate_until([request("generate_until", "a", {"max_gen_toks": 0})])


def test_register_keeps_lm_evals_own_models_and_the_cli_defaults_to_cpu():
    from lm_eval.api.registry import get_model

    register()
    register()  # idempotent
    assert get_model("oemdm").__name__ == "OeMDMLM"
    assert get_model("dummy").__name__ == "DummyLM"
    assert with_cpu_default(["--model", "oemdm"]) == ["--model", "oemdm", "--device", "cpu"]
    assert with_cpu_default(["run", "--device", "cuda"]) == ["run", "--device", "cuda"]
    assert with_cpu_default(["ls", "tasks"]) == ["ls", "tasks"]
    assert with_cpu_default(["--help"]) == ["--help"]


def write_tasks(folder):
    """The tiny multiple-choice task `tiny_mc` (and a rolling one) as YAML on a local jsonl."""
    (folder / "items.jsonl").write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    common = (
        f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {folder / 'items.jsonl'}\n"
        f"  cache_dir: {folder / 'hf_cache'}\ntest_split: test\n"
    )
    (folder / "tiny_mc.yaml").write_text(
        f"task: tiny_mc\n{common}output_type: multiple_choice\n"
        'doc_to_text: "{{question}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{gold}}"\n'
        'target_delimiter: ""\nmetric_list:\n  - metric: acc\n'
    )
    (folder / "tiny_rolling.yaml").write_text(
        f"task: tiny_rolling\n{common}output_type: loglikelihood_rolling\n"
        'doc_to_text: ""\ndoc_to_target: "{{question}}{{choices[0]}}"\n'
        "metric_list:\n  - metric: bits_per_byte\n"
    )


def expected_accuracy(run) -> float:
    model, _, data, _ = load_checkpoint(str(run))
    right = 0
    for item in ITEMS:
        context = encode(data, item["question"])
        scores = [chain_rule_logprob(model, context, encode(data, c)) for c in item["choices"]]
        right += int(max(range(len(scores)), key=scores.__getitem__) == item["gold"])
    return right / len(ITEMS)


def test_simple_evaluate_runs_a_local_yaml_task_end_to_end(runs, tmp_path, monkeypatch):
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    write_tasks(tmp_path)
    register()
    results = lm_eval.simple_evaluate(
        model="oemdm",
        model_args=f"pretrained={runs['ar']}",
        tasks=["tiny_mc", "tiny_rolling"],
        task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False),
    )
    assert results["results"]["tiny_mc"]["acc,none"] == expected_accuracy(runs["ar"])
    assert math.isfinite(results["results"]["tiny_rolling"]["bits_per_byte,none"])
    assert results["config"]["oemdm_likelihood"] == "exact-order"


@pytest.mark.slow
def test_the_command_line_route_runs_the_task(runs, tmp_path, monkeypatch, capsys):
    """`oemdm-lm-eval` (= `python -m oemdm_core.integrations.lm_eval`): lm-eval's command
    line with the model registered; it indexes all of lm-eval's tasks first (tens of seconds)."""
    from oemdm_core.integrations.lm_eval import main

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    write_tasks(tmp_path)
    args = ["--model", "oemdm", "--model_args", f"pretrained={runs['mdm']}", "--tasks", "tiny_mc"]
    main([*args, "--include_path", str(tmp_path)])
    out = capsys.readouterr().out
    assert "tiny_mc" in out and "acc" in out
    with pytest.raises(SystemExit, match="model_args.likelihood: got 'exact'"):
        main(
            [
                *args[:3],
                f"pretrained={runs['mdm']},likelihood=exact",
                *args[4:],
                "--include_path",
                str(tmp_path),
            ]
        )
