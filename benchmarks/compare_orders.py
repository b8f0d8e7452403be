"""Research benchmark: AR vs MDM vs block diffusion vs GenMD4 vs LoMDM on real text.

Trains `ar` (causal backbone, teacher forcing), `mdm`, `block` (B' = 16 and 4, block-causal
backbone, vectorised estimator), `genmd4` and `lomdm` with the same backbone, data and number
of steps ("steps" setting), and again at matched compute ("matched": every model gets the
backbone passes of LoMDM's run, 1 + K = 3 per step, as extra steps; passes are measured).
Default data: the Austen corpus, contiguous 90/5/5 split, character tokenizer, L = 256.

Reports, per setting and model (mean ± standard error across seeds): test bits per character
(deterministic NELBO of the EMA weights), the discrete-time bound L_T at T = 256, sample
quality (generative perplexity under the AR model of the same seed, unigram entropy), training
cost (wall time, backbone passes) and learning curves. Writes `results.md`, `results.json`
and PNG plots into `--out`.

    python benchmarks/compare_orders.py --quick        # a few minutes: smoke test
    python benchmarks/compare_orders.py                # CPU benchmark: 65 min on 2 cores
    python benchmarks/compare_orders.py --profile gpu-owt --tokenizer gpt2/tokenizer.json

Resumable: every finished model writes `results/<setting>-<model>-seed<s>.json` and is never
retrained; an interrupted model resumes from its last checkpoint. Rerun the same command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
from compare_orders_eval import MC_METHOD  # noqa: E402
from compare_orders_models import (  # noqa: E402
    PROFILES,
    JobResult,
    ModelSpec,
    Profile,
    ablation_specs,
    backfill,
    load_trained,
    matched_steps,
    model_specs,
    passes_per_step,
    run_job,
    select_specs,
    with_overrides,
)
from compare_orders_report import (  # noqa: E402
    Column,
    markdown_table,
    plot_learning_curves,
    plot_orders,
    plot_priorities,
    unigram_entropy,
)
from compare_orders_text import (  # noqa: E402
    measure_text,
    text_columns,
    text_rows,
    text_sections,
)

from oemdm_core.runtime.evaluation.sample_metrics import generative_perplexity  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = Path("../shared/data/austen.txt.xz")  # relative to the repository root
SETTINGS = ("steps", "matched")
REFERENCE = "lomdm"  # the model whose compute the "matched" setting gives to the others


class CorpusNotFound(FileNotFoundError):
    """The corpus file does not exist."""


def resolve_corpus(path: str | Path | None) -> Path:
    """The corpus file: `path` (relative to the working directory) or the default Austen file
    (relative to the repository root). Raises `CorpusNotFound` with what to do."""
    if path is None:
        candidate = (REPO / DEFAULT_CORPUS).resolve()
        how = f"the default corpus {DEFAULT_CORPUS} (relative to the repository root {REPO})"
    else:
        candidate = Path(path).expanduser().resolve()
        how = f"--corpus {path}"
    if not candidate.is_file():
        raise CorpusNotFound(
            f"corpus not found: expected {how} at {candidate}. Supply another UTF-8 text "
            "file (plain, .gz or .xz) with --corpus PATH, e.g. --corpus "
            "../shared/data/kjv.txt.xz; it is split contiguously 90/5/5."
        )
    return candidate


# -- running -------------------------------------------------------------------------------
def plan(
    specs: dict[str, ModelSpec],
    settings: Sequence[str],
    seeds: Sequence[int],
    steps: int,
    passes: dict[str, float],
) -> list[tuple[str, str, int, int]]:
    """Jobs (setting, model, seed, steps) in training order. A matched-setting job with as
    many steps as its "steps" job (the reference model, and any with its passes per step)
    is not trained again: its result is the "steps" one (see `same_in_both_settings`)."""
    same = same_in_both_settings(settings, steps, passes)
    reference = passes.get(REFERENCE, max(passes.values()))
    jobs = []
    for setting in settings:
        for seed in seeds:
            for key in specs:
                if setting == "matched":
                    if key in same:
                        continue  # identical to its "steps" run
                    n = matched_steps(steps, passes[key], reference)
                else:
                    n = steps
                jobs.append((setting, key, seed, n))
    return jobs


def same_in_both_settings(
    settings: Sequence[str], steps: int, passes: dict[str, float]
) -> set[str]:
    """Models whose matched-compute run would repeat their equal-steps run exactly."""
    if not ("steps" in settings and "matched" in settings):
        return set()
    reference = passes.get(REFERENCE, max(passes.values()))
    return {k for k, p in passes.items() if matched_steps(steps, p, reference) == steps}


def result_path(out: Path, setting: str, model: str, seed: int) -> Path:
    return out / "results" / f"{setting}-{model}-seed{seed}.json"


def check_manifest(out: Path, manifest: dict) -> None:
    """Refuse to mix runs of different configurations in one output directory. The seeds
    may differ (every result file is per seed): `--seeds 0` now and `--seeds 0,1` later
    reuses seed 0."""
    manifest = {**manifest, "profile": {**manifest["profile"], "seeds": None}}
    path = out / "manifest.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        diff = sorted(k for k in set(saved) | set(manifest) if saved.get(k) != manifest.get(k))
        if diff:
            details = "; ".join(f"{k}: {saved.get(k)!r} → {manifest.get(k)!r}" for k in diff)
            raise SystemExit(
                f"{out} holds a run with a different configuration ({details}); "
                "use another --out or delete it"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=1))


def job_cost(job: tuple[str, str, int, int], passes: dict[str, float]) -> float:
    """Relative training cost of a planned job: steps × backbone passes per step."""
    _, key, _, steps = job
    return steps * passes[key]


def train_job(
    profile: Profile,
    spec: ModelSpec,
    job: tuple[str, str, int, int],
    out: Path,
    corpus: Path | None,
    passes: float,
    progress: bool,
    threads: int | None = None,
) -> JobResult:
    """Train, evaluate and sample one planned job and save its result file (also the unit of
    work of a worker process, which sets its own thread count)."""
    if threads:
        torch.set_num_threads(threads)
    setting, _, seed, steps = job
    result = run_job(profile, spec, setting, steps, seed, out, corpus, passes, progress)
    result.save(result_path(out, setting, spec.key, seed))
    return result


def default_workers(device: str) -> int:
    """Worker processes for `--workers auto`: one per usable CPU core (at most 4) on the CPU,
    one on a GPU. Small models use one core far better than two threads share it."""
    if device not in ("auto", "cpu") or (device == "auto" and torch.cuda.is_available()):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, cores or 1))


def run_all(
    profile: Profile,
    specs: dict[str, ModelSpec],
    settings: Sequence[str],
    out: Path,
    corpus: Path | None,
    max_models: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    workers: int = 1,
) -> tuple[list[JobResult], bool]:
    """Train every job not finished yet; returns (finished results, whether all are done).

    With `workers` > 1 the pending jobs run in that many spawned processes with one torch
    thread each, longest first; per-model progress bars are then off. Every job is seeded, so
    the results equal those of a serial run with one thread (more threads may change float
    reductions in the last digits).
    """
    passes = {key: passes_per_step(spec) for key, spec in specs.items()}
    jobs = plan(specs, settings, profile.seeds, profile.steps, passes)
    (out / "results").mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    done: dict[tuple[str, str, int, int], JobResult] = {}
    pending = []
    for job in jobs:
        setting, key, seed, _ = job
        path = result_path(out, setting, key, seed)
        if not path.is_file():
            pending.append(job)
            continue
        result = JobResult.load(path)
        if result.mc_method != MC_METHOD:
            log(f"adding Monte Carlo metrics to {setting}/{key}/seed{seed}")
            result = backfill(result, profile, specs[key], out, corpus)
            result.save(path)
        done[job] = result
        log(f"finished before: {setting}/{key}/seed{seed} (skipped)")
    complete = max_models is None or len(pending) <= max_models
    if not complete:
        pending = pending[:max_models]

    bar = tqdm(total=len(jobs), initial=len(done), desc="models", disable=not progress)
    try:
        if workers <= 1:
            for job in pending:
                setting, key, seed, steps = job
                bar.set_postfix_str(f"{setting}/{key}/seed{seed}")
                log(f"training {setting}/{key}/seed{seed}: {steps} steps × {passes[key]:g} passes")
                done[job] = train_job(profile, specs[key], job, out, corpus, passes[key], progress)
                bar.update(1)
        else:
            run_parallel(profile, specs, pending, out, corpus, passes, workers, done, bar, log)
    except KeyboardInterrupt:
        log("\ninterrupted: rerun the same command to resume (finished models are kept)")
        raise
    finally:
        bar.close()
    results = [done[job] for job in jobs if job in done]
    if complete:
        same = same_in_both_settings(settings, profile.steps, passes)
        for r in [r for r in results if r.setting == "steps" and r.model in same]:
            results.append(JobResult(**{**asdict(r), "setting": "matched"}))
    return results, complete


def run_parallel(
    profile: Profile,
    specs: dict[str, ModelSpec],
    pending: list[tuple[str, str, int, int]],
    out: Path,
    corpus: Path | None,
    passes: dict[str, float],
    workers: int,
    done: dict,
    bar,
    log: Callable[[str], None],
) -> None:
    """Run `pending` in `workers` spawned processes, longest job first, into `done`."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    queue = sorted(pending, key=lambda job: -job_cost(job, passes))
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    running = {}
    try:
        while queue or running:
            while queue and len(running) < workers:  # at most one job per worker in flight
                job = queue.pop(0)
                setting, key, seed, steps = job
                log(f"training {setting}/{key}/seed{seed}: {steps} steps × {passes[key]:g} passes")
                future = pool.submit(
                    train_job, profile, specs[key], job, out, corpus, passes[key], False, 1
                )
                running[future] = job
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                done[job] = future.result()
                setting, key, seed, _ = job
                log(
                    f"finished {setting}/{key}/seed{seed} ({done[job].wall_s / 60:.1f} min training)"
                )
                bar.update(1)
    except BaseException:
        # Ctrl-C reaches the workers too; whatever they had not finished resumes from its
        # last checkpoint on the next run, so stop them now rather than wait.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# -- reporting -----------------------------------------------------------------------------
def judges(results: Sequence[JobResult]) -> dict[int, JobResult]:
    """Per seed, the AR run with the most steps (it scores every sample of that seed)."""
    best: dict[int, JobResult] = {}
    for r in results:
        if r.model == "ar" and (r.seed not in best or r.steps > best[r.seed].steps):
            best[r.seed] = r
    return best


def score_samples(results: Sequence[JobResult]) -> list[dict]:
    """Result rows (dicts) with sample metrics added: gen_ppl (under the AR judge of the same
    seed; None without an AR run), sample_unigram_bits, perplexity, wall_min."""
    judge_models = {seed: load_trained(Path(r.run_dir)) for seed, r in judges(results).items()}
    rows = []
    for r in results:
        row = asdict(r)
        tokens = torch.tensor(r.sample_tokens)
        judge = judge_models.get(r.seed)
        gen = generative_perplexity(tokens, judge) if judge is not None else None
        row["gen_ppl"] = gen.perplexity if gen is not None else None
        row["sample_unigram_bits"] = unigram_entropy(tokens)
        row["perplexity"] = 2.0 ** (r.test_bpt_mc if r.test_bpt_mc is not None else r.test_bpt)
        row["wall_min"] = r.wall_s / 60
        row["mega_passes"] = r.backbone_passes / 1e3
        rows.append(row)
    return rows


COLUMNS = [
    Column("steps", "steps", 0),
    Column("passes/step", "passes_per_step", 0),
    Column("compute (10³ seq-passes)", "mega_passes", 1),
    Column("test bits/char (MC)", "test_bpt_mc"),
    Column("MC eval SE", "test_bpt_mc_stderr"),
    Column("test bits/char (det. grid)", "test_bpt"),
    Column("L_T bits/char (T=256, MC)", "bound_bpt_mc"),
    Column("perplexity/char (MC)", "perplexity", 2),
    Column("gen. PPL (AR judge)", "gen_ppl", 2),
    Column("sample unigram H (bits)", "sample_unigram_bits", 2),
    Column("wall (min)", "wall_min", 1),
]


def table_columns(profile: Profile) -> list[Column]:
    """COLUMNS, with "char" in the headers replaced by "token" unless the tokenizer is `char`."""
    if profile.tokenizer.get("name") == "char":
        return list(COLUMNS)
    return [replace(c, header=c.header.replace("/char", "/token")) for c in COLUMNS]


def write_report(
    out: Path,
    rows: list[dict],
    specs: dict[str, ModelSpec],
    settings: Sequence[str],
    header: str,
    columns: Sequence[Column] = COLUMNS,
    extra_sections: Sequence[str] = (),
    paper: bool = True,
) -> Path:
    """results.md (tables, samples, plots), results.json and the PNG plots; `paper` adds
    the paper's OpenWebText perplexities as a reference column."""
    models = list(specs)
    owt = {k: s.paper_owt_ppl for k, s in specs.items()}
    parts = [header]
    for setting in settings:
        parts.append(f"\n### Setting: {setting}\n")
        parts.append(
            markdown_table(
                rows,
                setting,
                models,
                columns,
                extra=(lambda m: f"{owt[m]}" if owt.get(m) else "–") if paper else None,
                extra_header="paper OWT PPL",
            )
        )
    if rows:
        data_h = rows[0]["data_unigram_bits"]
        parts.append(f"\nUnigram entropy of the test sequences: {data_h:.2f} bits.\n")
    plots = []
    if rows and any(r["curve"] for r in rows):
        plots.append(plot_learning_curves(rows, settings, out / "learning_curves.png"))
    first = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        first.setdefault((r["setting"], r["model"]), r)
    setting0 = settings[0]
    orders = {
        m: torch.tensor(first[(setting0, m)]["sample_order"])
        for m in models
        if (setting0, m) in first
    }
    if orders:
        plots.append(
            plot_orders(orders, out / "generation_order.png", f"generation order ({setting0})")
        )
    weights = {
        m: torch.tensor(first[(setting0, m)]["passage_w"])
        for m in models
        if (setting0, m) in first and first[(setting0, m)]["passage_w"] is not None
    }
    if weights:
        text = next(iter(first.values()))["passage_text"]
        plots.append(
            plot_priorities(text, weights, out / "token_priorities.png", "learned priorities")
        )
    parts.extend(extra_sections)
    if rows:
        parts.append("\n### Samples (first of each model, first seed, first setting)\n")
        for m in models:
            if (setting0, m) in first:
                sample = first[(setting0, m)]["sample_texts"][0].replace("\n", "⏎")
                parts.append(f"- **{m}**: `{sample[:200]}`")
    parts.append("\n### Plots\n")
    parts.extend(f"- `{p.name}`" for p in plots)
    (out / "results.md").write_text("\n".join(parts) + "\n")
    slim = [{k: v for k, v in r.items() if not k.startswith(("sample_", "passage_"))} for r in rows]
    (out / "results.json").write_text(json.dumps(slim, indent=1))
    return out / "results.md"


# -- command line --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = harness.new_parser(__doc__)
    p.add_argument("--corpus", help=f"UTF-8 text file (default {DEFAULT_CORPUS} from the repo)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="default")
    p.add_argument(
        "--quick", action="store_true", help="same as --profile quick (about a minute on 2 cores)"
    )
    harness.add_out(p, "output directory (default runs/compare_orders-<profile>)")
    harness.add_seeds(p)
    p.add_argument("--steps", type=int, help="optimizer steps of the 'steps' setting")
    p.add_argument("--batch-size", type=int, help="sequences per step")
    p.add_argument(
        "--models",
        help=f"comma-separated subset of {','.join(model_specs())}; ablations (only when "
        f"named): {','.join(ablation_specs())}",
    )
    p.add_argument("--settings", default=",".join(SETTINGS), help="steps,matched or one of them")
    p.add_argument("--preset", help="backbone preset (tiny, small, base); overrides the profile")
    p.add_argument("--length", type=int, help="sequence length L")
    p.add_argument("--device", help="auto, cpu, cuda …")
    p.add_argument("--tokenizer", help="tokenizer.json for the GPU profiles (hf tokenizer)")
    p.add_argument("--max-models", type=int, help="train at most this many models, then stop")
    p.add_argument(
        "--workers",
        default="auto",
        help="models trained at once, in separate processes with one thread each "
        "(default auto: one per CPU core up to 4 on the CPU, 1 on a GPU)",
    )
    harness.add_threads(p)  # of a single worker
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def configure(args: argparse.Namespace) -> tuple[Profile, dict[str, ModelSpec], list[str]]:
    profile = PROFILES["quick" if args.quick else args.profile]
    backbone = dict(profile.backbone)
    if args.preset:
        backbone = {"preset": args.preset}
    tokenizer = profile.tokenizer
    if args.tokenizer:
        tokenizer = {**tokenizer, "path": args.tokenizer}
    profile = with_overrides(
        profile,
        backbone=backbone,
        seeds=args.seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        length=args.length,
        device=args.device,
        tokenizer=tokenizer,
    )
    models = args.models or (",".join(profile.models) if profile.models else None)
    specs = select_specs(model_specs(), models)
    return profile, specs, parse_settings(args.settings)


def parse_settings(value: str) -> list[str]:
    """`--settings`: "steps", "matched" or both, comma-separated."""
    settings = [s.strip() for s in value.split(",") if s.strip()]
    if not settings or any(s not in SETTINGS for s in settings):
        raise SystemExit(f"--settings: got {value!r}; valid: steps, matched")
    return settings


def parse_workers(value: str, device: str) -> int:
    """`--workers`: "auto" or a positive integer."""
    if value == "auto":
        return default_workers(device)
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"--workers: got {value!r}; valid: auto or a positive integer")
    return int(value)


def main(argv: Sequence[str] | None = None) -> int:
    args = harness.parse(build_parser(), argv)
    profile, specs, settings = configure(args)
    corpus = None
    if profile.dataset is None:
        try:
            corpus = resolve_corpus(args.corpus)
        except CorpusNotFound as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    out = Path(args.out or f"runs/compare_orders-{profile.name}")
    check_manifest(
        out,
        {
            "profile": json.loads(json.dumps(asdict(profile))),
            "models": list(specs),
            "settings": settings,
            "corpus": str(corpus) if corpus else None,
        },
    )
    started = datetime.now(timezone.utc)
    workers = parse_workers(args.workers, profile.device)
    results, complete = run_all(
        profile,
        specs,
        settings,
        out,
        corpus,
        args.max_models,
        not args.no_progress,
        workers=workers,
    )
    rows = score_samples(results)
    columns, sections = table_columns(profile), []
    if profile.zero_shot or profile.judge_steps:
        measured = measure_text(results, profile, specs, out, corpus, judges(results))
        rows = text_rows(rows, measured)
        columns = text_columns(profile, columns)
        sections = text_sections(measured, out, rows, specs, settings)
    header = (
        f"## compare_orders: profile `{profile.name}`\n\n"
        + harness.run_header(__file__, argv, harness.machine(workers), started)
        + f"Data: {corpus or profile.dataset}, L = {profile.length}, batch {profile.batch_size}, "
        f"backbone {profile.backbone}, seeds {list(profile.seeds)}, steps {profile.steps}  \n"
        + ("" if complete else "**Incomplete: stopped by --max-models; rerun to continue.**  \n")
    )
    report = write_report(out, rows, specs, settings, header, columns, sections)
    print(report.read_text())
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
