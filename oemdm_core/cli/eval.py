"""`oemdm eval CKPT`: NELBO (or exact-order likelihood) of a trained checkpoint on its own
split or, with `--data`, zero-shot on several datasets; as a table and JSON."""

from __future__ import annotations

import argparse

from oemdm_core.cli.args import (
    add_sampler_arguments,
    non_negative_int,
    positive_int,
    sampler_from_flags,
    write_json_report,
)
from oemdm_core.errors import ConfigError
from oemdm_core.plugin.registry import Registry, resolve_registry

NAME = "eval"
# = oemdm_core.interfaces.grids.GRIDS (tested), spelled out: `--help` imports no torch
GRID_CHOICES = ("uniform", "equal-reveal")
HELP = "Evaluate a checkpoint: bits/token and perplexity (deterministic by default)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="Run directory or checkpoint directory.")
    parser.add_argument("--split", choices=["validation", "test"], help="Default: the config's.")
    parser.add_argument(
        "--mode",
        choices=["deterministic", "monte-carlo", "exact-order"],
        help="NELBO mode (default: the config's), or exact-order: the exact likelihood of "
        "the deterministic order chosen by --scorer (reported next to the NELBO).",
    )
    parser.add_argument(
        "--scorer",
        help="exact-order: a deterministic scorer (confidence, margin, entropy, velocity; "
        "default confidence).",
    )
    parser.add_argument(
        "--per-step",
        type=positive_int,
        default=1,
        help="exact-order: positions un-masked per step.",
    )
    parser.add_argument(
        "--data",
        action="append",
        metavar="SPEC",
        help="Zero-shot: evaluate on this dataset instead (repeatable): NAME, "
        "NAME:{options}, a file or a saved datasets dir, optionally @train|validation|test|all.",
    )
    parser.add_argument(
        "--protocol",
        choices=["packed", "padded"],
        help="Zero-shot protocol (default: the config's).",
    )
    parser.add_argument(
        "--num-times", type=positive_int, help="Times per sequence (default: config)."
    )
    parser.add_argument(
        "--max-sequences", type=non_negative_int, help="Evaluate the first N sequences (0 = all)."
    )
    parser.add_argument(
        "--length", type=positive_int, help="Sequence length (default: the model's)."
    )
    parser.add_argument("--steps", type=positive_int, help="Evaluate the discrete-time bound L_T.")
    parser.add_argument(
        "--grid",
        choices=list(GRID_CHOICES),
        default="uniform",
        help="--steps: the sampling grid of L_T, as the sampler's `grid` option: uniform "
        "(t_k = k/T) or equal-reveal (--num-times simulated paths per sequence).",
    )
    parser.add_argument("--json", metavar="FILE", help="Also write the results as JSON.")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps.")
    parser.add_argument(
        "--no-progress", action="store_true", help="Do not show a progress bar (on stderr)."
    )
    parser.add_argument(
        "--samples",
        type=non_negative_int,
        default=0,
        help="Also draw N samples (the config's sampler) and "
        "report unigram entropy and repetition rate.",
    )
    add_sampler_arguments(parser, "--samples: ")
    parser.add_argument(
        "--judge",
        metavar="CKPT|hf:DIR",
        help="Judge of the samples (generative perplexity): an oemdm AR checkpoint, or "
        "hf:DIR, a local Hugging Face causal LM (needs the 'judge' extra). Samples are "
        "re-encoded as text with the judge's tokenizer.",
    )
    add_reverse_scheduler_argument(parser)


def add_reverse_scheduler_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reverse-scheduler",
        choices=["learned", "off"],
        default="learned",
        help="off: switch a learned order's reverse scheduler off (LoMDM: ŵ ≡ c1, MDM's "
        "random order with the same denoiser; the paper's c2 = 0 sampling ablation).",
    )


def set_reverse_scheduler(model, choice: str) -> None:
    """Apply `--reverse-scheduler` to `model`; a one-line error for orders without one."""
    if choice == "learned":
        return
    if not model.order.has_reverse_scheduler:
        raise ConfigError(
            f"--reverse-scheduler off: order '{model.order.name}' has no learned reverse "
            "scheduler to switch off (orders that have one: lomdm); use 'learned'"
        )
    model.order.reverse_scheduler_enabled = False


def load(checkpoint: str, registry: Registry | None = None, device: str = "cpu"):
    """(model, experiment config, Data without splits, checkpoint dir) of a checkpoint."""
    from oemdm_core.runtime.checkpoint.restore import load_checkpoint

    return load_checkpoint(checkpoint, registry, device)


def metrics_table(metrics: dict[str, object]) -> str:
    """A two-column text table of `metrics`."""
    width = max(len(k) for k in metrics)
    lines = []
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def check_sample_arguments(args: argparse.Namespace) -> None:
    """--judge, --sampler and --sampler-set only make sense with --samples; --grid with
    --steps."""
    if args.grid != "uniform" and args.steps is None:
        raise ValueError(f"--grid {args.grid} is the grid of the T-step bound: add --steps T")
    if args.judge and not args.samples:
        raise ValueError(f"--judge {args.judge} scores samples: add --samples N (N >= 1)")
    if (args.sampler or args.sampler_options) and not args.samples:
        raise ValueError(
            "--sampler and --sampler-set choose the --samples sampler: add --samples N"
        )


def build_scorer(args: argparse.Namespace, registry: Registry | None = None):
    """The exact-order scorer of `args` (None for the NELBO modes), checked before any work."""
    if args.mode != "exact-order":
        if args.scorer is not None:
            raise ValueError(f"--scorer {args.scorer} is only used with --mode exact-order")
        return None
    from oemdm_core.runtime.evaluation.exact_order import check_scorer

    if args.per_step < 1:
        raise ValueError(f"--per-step must be >= 1, got {args.per_step}")
    scorer = resolve_registry(registry).build("scorer", args.scorer or "confidence")
    check_scorer(scorer)
    return scorer


def build_sampler(args: argparse.Namespace, spec, registry: Registry | None = None):
    """The `--samples` sampler (see `sampler_from_flags`)."""
    return sampler_from_flags(args.sampler, spec, args.sampler_options, "--sampler-set", registry)


def evaluation_config(args: argparse.Namespace, cfg, max_length: int):
    """The checkpoint's experiment config with the evaluation options of `args` applied
    (`--split`, `--mode`, `--num-times`, `--max-sequences`, `--length`)."""
    ev = cfg.evaluation
    updates = {
        "split": args.split or ev.split,
        "mode": ev.mode if args.mode in (None, "exact-order") else args.mode,
        "num_times": ev.num_times if args.num_times is None else args.num_times,
        "max_sequences": ev.max_sequences
        if args.max_sequences is None
        else (args.max_sequences or None),
    }
    cfg = cfg.model_copy(update={"evaluation": ev.model_copy(update=updates)})
    if args.length is not None:
        if args.length > max_length:
            raise ValueError(
                f"--length {args.length} exceeds the model's maximum sequence length {max_length}"
            )
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"length": args.length})})
    return cfg


def run(args: argparse.Namespace, registry: Registry | None = None) -> int:
    from functools import partial

    from oemdm_core.runtime.checkpoint.store import load_tokenizer_record
    from oemdm_core.runtime.data_cache import build_data, eval_batches
    from oemdm_core.runtime.evaluation.data_spec import parse_data_spec
    from oemdm_core.runtime.evaluation.exact_order import evaluate_exact_order
    from oemdm_core.runtime.evaluation.judge import parse_judge
    from oemdm_core.runtime.evaluation.likelihood import evaluate

    registry = resolve_registry(registry)
    check_sample_arguments(args)
    scorer = build_scorer(args, registry)
    model, cfg, restored, ckpt = load(args.checkpoint, registry, args.device)
    set_reverse_scheduler(model, args.reverse_scheduler)
    cfg = evaluation_config(args, cfg, model.backbone.max_length)
    ev = cfg.evaluation
    bound = {"steps": args.steps, "grid": args.grid}  # L_T on the sampler's grid, if given
    nelbo = partial(evaluate, model, mode=ev.mode, num_times=ev.num_times, seed=ev.seed, **bound)
    score = (
        nelbo
        if scorer is None
        else partial(evaluate_exact_order, model, scorer=scorer, per_step=args.per_step)
    )
    sampler = build_sampler(args, cfg.sampling.sampler, registry) if args.samples else None
    specs = [parse_data_spec(spec, registry, ev.split) for spec in args.data or []]
    judge = parse_judge(args.judge, registry, args.device) if args.judge else None
    if args.data:
        return run_zero_shot(args, model, cfg, ckpt, specs, score, restored.tokenizer)

    data = build_data(cfg, registry, load_tokenizer_record(ckpt), splits=("evaluation",))
    batches = eval_batches(data.evaluation, ev.batch_size, ev.max_sequences)
    shown = batches
    if not args.no_progress:
        from tqdm.auto import tqdm

        shown = tqdm(batches, desc="eval", unit="batch", dynamic_ncols=True, leave=False)
    metrics: dict[str, object] = {
        "checkpoint": str(ckpt),
        "split": ev.split,
        "order": model.order.name,
        "reverse_scheduler": args.reverse_scheduler,
        **score(shown).as_dict(),
    }
    if scorer is not None:  # the exact-order likelihood, reported next to the NELBO
        nelbo_result = nelbo(batches)
        metrics.update(
            scorer=scorer.name,
            per_step=args.per_step,
            nelbo_mode=nelbo_result.mode,
            nelbo_bits_per_token=nelbo_result.bits_per_token,
            nelbo_stderr_bits=nelbo_result.stderr_bits,
        )
    if args.samples:
        from oemdm_core.runtime.evaluation.sample_metrics import sample_quality

        quality = sample_quality(
            model,
            sampler,
            args.samples,
            judge,
            seed=ev.seed,
            tokenizer=data.tokenizer,
            decode=data.decode,
        )
        metrics.update(quality)
    print(metrics_table(metrics))
    if args.json:
        write_json_report(args.json, metrics)
    return 0


def run_zero_shot(args, model, cfg, ckpt, specs, score, tokenizer) -> int:
    """`--data`: one row per dataset, through the checkpoint's `tokenizer`."""
    from oemdm_core.runtime.evaluation.zero_shot import format_table, prepare, zero_shot

    if args.samples:
        raise ValueError("--samples is not used with --data (zero-shot scores data only)")
    prepared = prepare(
        specs,
        tokenizer,
        model.vocab_size,
        cfg.data.length,
        args.protocol or cfg.data.protocol,
        cfg.data.split_lines,
    )
    ev = cfg.evaluation
    rows = zero_shot(prepared, score, ev.batch_size, ev.max_sequences)
    print(
        f"checkpoint {ckpt} (order {model.order.name}, mode {rows[0].mode}, L = {cfg.data.length})"
    )
    print(format_table(rows))
    if args.json:
        payload = {
            "checkpoint": str(ckpt),
            "order": model.order.name,
            "length": cfg.data.length,
            "results": [r.as_dict() for r in rows],
        }
        write_json_report(args.json, payload)
    return 0
