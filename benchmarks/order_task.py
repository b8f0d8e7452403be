"""What the synthetic order tasks (`synthetic_order_task.py`, `lookup_chain_task.py`) share:
their command line, training every model × setting × seed on the task's corpus, the report
header and the mean-generation-rank plots. Each task supplies its corpus, models, columns
and task metrics."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import harness
import torch
from compare_orders import check_manifest, parse_settings, parse_workers, run_all
from compare_orders_models import ModelSpec, Profile, with_overrides
from compare_orders_report import plot_mean_rank


def task_parser(description: str, out: str, quick_help: str, models_help: str, settings: str):
    """The options every order task takes (`--quick`, `--seeds`, `--models`, …)."""
    p = harness.new_parser(description)
    p.add_argument("--quick", action="store_true", help=quick_help)
    harness.add_out(p, f"output directory (default runs/{out}[-quick])")
    harness.add_seeds(p)
    p.add_argument("--steps", type=int, help="optimizer steps of the 'steps' setting")
    p.add_argument("--models", help=f"comma-separated subset of {models_help}")
    p.add_argument("--settings", default=settings, help="steps,matched or one")
    p.add_argument("--max-models", type=int, help="train at most this many models, then stop")
    p.add_argument("--workers", default="auto", help="models trained at once (see compare_orders)")
    harness.add_threads(p)  # of a single worker
    p.add_argument("--no-progress", action="store_true")
    return p


@dataclass
class TaskRun:
    """A finished (or, with `--max-models`, partial) run of an order task."""

    profile: Profile
    specs: dict[str, ModelSpec]
    settings: list[str]
    out: Path
    corpus: Path
    workers: int
    results: list
    complete: bool


def run_task(
    args: argparse.Namespace,
    profile: Profile,
    quick: dict,
    specs: dict[str, ModelSpec],
    out: str,
    write_corpus: Callable[[Path], Path],
) -> TaskRun:
    """Train every selected model of the task: `profile` with `quick` overrides under
    `--quick`, then `--steps` / `--seeds`; the corpus written by `write_corpus(out dir)`."""
    if args.quick:
        profile = with_overrides(profile, **quick)
    profile = with_overrides(profile, steps=args.steps, seeds=args.seeds)
    settings = parse_settings(args.settings)
    directory = Path(args.out or f"runs/{out}{'-quick' if args.quick else ''}")
    corpus = write_corpus(directory)
    profile_record = json.loads(json.dumps(asdict(profile)))  # as compare_orders records it
    check_manifest(
        directory, {"profile": profile_record, "models": list(specs), "settings": settings}
    )
    workers = parse_workers(args.workers, profile.device)
    results, complete = run_all(
        profile,
        specs,
        settings,
        directory,
        corpus,
        args.max_models,
        not args.no_progress,
        workers=workers,
    )
    return TaskRun(profile, specs, settings, directory, corpus, workers, results, complete)


def task_header(title: str, script: str, argv: Sequence[str] | None, run: TaskRun, entropy: str):
    """The report's header: title, command, machine, entropy line, profile, completeness."""
    p = run.profile
    return (
        f"## {title}\n\n"
        + harness.run_header(script, argv, harness.machine(run.workers))
        + f"Entropy: {entropy}. Backbone {p.backbone}, batch "
        f"{p.batch_size}, seeds {list(p.seeds)}  \n"
        + (
            ""
            if run.complete
            else "**Incomplete: stopped by --max-models; rerun to continue.**  \n"
        )
    )


def mean_rank_plots(rows: list[dict], settings: Sequence[str], out: Path) -> dict[str, Path]:
    """Per setting, a plot of each model's mean generation rank per position (first seed)."""
    plots = {}
    for setting in settings:
        first = {}
        for r in sorted(rows, key=lambda r: r["seed"]):
            if r["setting"] == setting:
                first.setdefault(r["model"], torch.tensor(r["sample_order"]))
        if first:
            path = out / f"mean_rank_{setting}.png"
            plot_mean_rank(first, path, f"mean generation rank ({setting})")
            plots[setting] = path
    return plots
