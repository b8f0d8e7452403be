"""The evaluation a diffusion-LM researcher expects, at a scale a 2-core CPU finishes in
minutes: zero-shot bits/char across corpora, exact-order likelihoods next to the NELBO, and
generative perplexity vs sampling steps with the ancestral and remasking samplers.

    python benchmarks/eval_suite.py --quick             # ~2 min on 2 cores: a smoke test
    python benchmarks/eval_suite.py --steps 2000        # longer training, same tables

Models: `ar` (causal, teacher forcing), `mdm` and `lomdm`, tiny transformers trained on
Austen (character tokenizer fitted on its training split, packed L = 64), all from
`oemdm train`. Then, through `oemdm eval`'s functions:

1. zero-shot: each model on the test splits of Austen, KJV and Shakespeare
   (../shared/data/*.txt.xz, contiguous 90/5/5), bits/char and unrepresentable characters;
2. exact-order likelihood (`confidence` and `velocity` scorers) next to the deterministic
   NELBO on the Austen test split;
3. gen-PPL and unigram entropy of samples vs steps T for mdm and lomdm with `ancestral` and
   `remdm` (cap η = 0.02, rescale η = 0.5), judged by the AR model and by a tiny random GPT-2 (through
   transformers, if installed: only to show the path; its numbers mean nothing).

Writes `<out>/results.json` and prints Markdown tables.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import harness

from oemdm_core.testing.tiny_gpt2 import write_tiny_gpt2

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CORPORA = ("austen", "kjv", "shakespeare")
SAMPLERS = (  # label, registry name, options
    ("ancestral", "ancestral", {}),
    ("remdm cap η=0.02", "remdm", {"strategy": "cap", "eta": 0.02}),
    ("remdm rescale η=0.5", "remdm", {"strategy": "rescale", "eta": 0.5}),
)


def train(out: Path, name: str, order: str, steps: int, extra: list[str]) -> Path:
    from oemdm_core.cli import main

    sets = [
        f"model.order={order}",
        "model.backbone={name: transformer, preset: tiny, d_model: 64}",
        f"data.dataset={{name: text-files, paths: [{DATA / 'austen.txt.xz'}]}}",
        "data.length=64",
        f"data.cache_dir={out / 'cache'}",
        f"training.steps={steps}",
        "training.batch_size=16",
        f"training.warmup_steps={max(1, steps // 20)}",
        "training.eval_every=0",
        "training.checkpoint_every=0",
        "training.progress=false",
        "training.log_every=50",
        f"training.run_dir={out / name}",
        "evaluation.max_sequences=32",
        "sampling.num_samples=0",
        *extra,
    ]
    if main(["train", *[a for s in sets for a in ("--set", s)]]) != 0:
        raise SystemExit(f"training {name} failed")
    return out / name


def tiny_gpt2(out: Path, tokenizer_text: str) -> Path | None:
    """A random 1-layer GPT-2 with a byte-level BPE trained on `tokenizer_text` (None
    without `transformers`)."""
    try:
        return write_tiny_gpt2(out / "gpt2-tiny", tokenizer_text)
    except ImportError:
        return None


def main(argv: list[str] | None = None) -> None:
    p = harness.new_parser(__doc__)
    p.add_argument("--quick", action="store_true", help="fewer steps, sequences and samples")
    p.add_argument("--steps", type=int, help="training steps per model (default 600; quick 150)")
    harness.add_out(p, "output directory (default: a temporary directory)")
    p.add_argument("--reuse", action="store_true", help="reuse the checkpoints already in --out")
    harness.add_threads(p, default=1)
    args = harness.parse(p, argv)
    steps = args.steps or (150 if args.quick else 600)
    num_seq = 16 if args.quick else 64
    num_samples = 8 if args.quick else 32
    sample_steps = (16, 64) if args.quick else (16, 64, 256)
    out = Path(args.out or tempfile.mkdtemp(prefix="eval_suite-"))
    out.mkdir(parents=True, exist_ok=True)

    from oemdm_core.cli.eval import load
    from oemdm_core.plugin.registry import registry
    from oemdm_core.runtime.data_cache import eval_batches
    from oemdm_core.runtime.evaluation.data_spec import parse_data_spec
    from oemdm_core.runtime.evaluation.exact_order import evaluate_exact_order
    from oemdm_core.runtime.evaluation.judge import HFJudge, OeMDMJudge
    from oemdm_core.runtime.evaluation.likelihood import evaluate
    from oemdm_core.runtime.evaluation.sample_metrics import sample_quality
    from oemdm_core.runtime.evaluation.zero_shot import prepare, zero_shot

    timings, runs = {}, {}
    for name, order, extra in (
        (
            "ar",
            "ar",
            ["model.backbone={name: transformer, preset: tiny, d_model: 64, attention: causal}"],
        ),
        ("mdm", "mdm", []),
        ("lomdm", "lomdm", []),
    ):
        if args.reuse and (out / name / "checkpoint").is_dir():
            runs[name] = out / name
            continue
        start = time.perf_counter()
        runs[name] = train(out, name, order, steps, extra)
        timings[f"train {name}"] = time.perf_counter() - start

    results: dict = {"steps": steps, "zero_shot": {}, "exact_order": {}, "gen_ppl": []}
    specs_text = [f"text-files:{{paths: [{DATA / f'{c}.txt.xz'}]}}@test" for c in CORPORA]
    models = {name: load(str(run), registry) for name, run in runs.items()}
    for name, (model, _cfg, data, _) in models.items():
        specs = [parse_data_spec(s, registry) for s in specs_text]
        prepared = prepare(specs, data.tokenizer, model.vocab_size, 64, "packed")

        def nelbo(batches, model=model):
            return evaluate(model, batches, num_times=16)

        rows = zero_shot(prepared, nelbo, 32, num_seq)
        results["zero_shot"][name] = {c: r.as_dict() for c, r in zip(CORPORA, rows, strict=True)}
        austen = prepared[0][2]
        batches = eval_batches(austen, 32, num_seq)
        bound = nelbo(batches)
        exact = {"nelbo": bound.bits_per_token, "nelbo_se": bound.stderr_bits}
        for scorer in ("confidence", "velocity"):
            r = evaluate_exact_order(model, batches, registry.build("scorer", scorer))
            exact[scorer], exact[f"{scorer}_se"] = r.bits_per_token, r.stderr_bits
        results["exact_order"][name] = exact

    judges = {"ar": OeMDMJudge(models["ar"][0], models["ar"][2].tokenizer)}
    gpt2 = tiny_gpt2(out, _read(DATA / "austen.txt.xz"))
    if gpt2 is not None:
        judges["gpt2-tiny (random)"] = HFJudge(gpt2)
    for name in ("mdm", "lomdm"):
        model, _cfg, data, _ = models[name]
        for label, sampler_name, options in SAMPLERS:
            for t in sample_steps:
                sampler = registry.build("sampler", sampler_name, steps=t, **options)
                row = {"model": name, "sampler": label, "steps": t}
                for judge_name, judge in judges.items():
                    start = time.perf_counter()
                    m = sample_quality(
                        model,
                        sampler,
                        num_samples,
                        judge,
                        seed=0,
                        tokenizer=data.tokenizer,
                        decode=data.decode,
                    )
                    timings[f"sample {name} {sampler_name} T={t} {judge_name}"] = (
                        time.perf_counter() - start
                    )
                    row[f"gen_ppl[{judge_name}]"] = m["gen_perplexity"]
                    row["entropy_bits"] = m["sample_unigram_entropy_bits"]
                    row["nfe"] = m["sample_nfe"]
                results["gen_ppl"].append(row)
    previous = out / "results.json"
    if args.reuse and previous.is_file():  # keep the training times of the reused runs
        timings = {**json.loads(previous.read_text()).get("timings_s", {}), **timings}
    results["timings_s"] = timings
    harness.write_results(out / "results.json", results)
    print(harness.run_header(__file__, argv))
    print_tables(results, num_seq, num_samples)
    print(f"\nresults: {out / 'results.json'}")


def _read(path: Path) -> str:
    import lzma

    return lzma.open(path, "rt", encoding="utf-8").read()[:400_000]


def print_tables(results: dict, num_seq: int, num_samples: int) -> None:
    print(f"\nZero-shot bits/char (test splits, first {num_seq} sequences of L = 64; ± SE):\n")
    rows = []
    for name, by_corpus in results["zero_shot"].items():
        cells = [
            f"{by_corpus[c]['bits_per_char']:.3f} ± {by_corpus[c]['stderr_bits']:.3f}"
            for c in CORPORA
        ]
        unk = (
            f"{by_corpus['kjv']['unrepresentable']} / {by_corpus['shakespeare']['unrepresentable']}"
        )
        rows.append([name, *cells, unk])
    columns = ["model", *CORPORA, "unrepresentable chars (kjv / shakespeare)"]
    print(harness.table(columns, rows))
    print("\nExact-order likelihood vs NELBO (Austen test, bits/char):\n")
    rows = [
        [name, *(f"{e[k]:.3f} ± {e[f'{k}_se']:.3f}" for k in ("nelbo", "confidence", "velocity"))]
        for name, e in results["exact_order"].items()
    ]
    columns = ["model", "NELBO (deterministic)", "exact, confidence order", "exact, velocity order"]
    print(harness.table(columns, rows))
    gen = results["gen_ppl"]
    judges = [k for k in gen[0] if k.startswith("gen_ppl[")]
    print(f"\nGen-PPL ({num_samples} samples of L = 64) and unigram entropy vs steps T:\n")
    rows = [
        [
            r["model"],
            r["sampler"],
            r["steps"],
            f"{r['nfe']:.0f}",
            *(f"{r[j]:.2f}" for j in judges),
            f"{r['entropy_bits']:.3f}",
        ]
        for r in gen
    ]
    print(harness.table(["model", "sampler", "T", "NFE", *judges, "entropy (bits)"], rows))


if __name__ == "__main__":
    main()
