"""`oemdm eval CKPT`: NELBO of a trained checkpoint on a split, as a table and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from oemdm_core.commands.args import non_negative_int, positive_int

NAME = "eval"
HELP = "Evaluate a checkpoint: bits/token and perplexity (deterministic by default)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="Run directory or checkpoint directory.")
    parser.add_argument("--split", choices=["validation", "test"], help="Default: the config's.")
    parser.add_argument(
        "--mode", choices=["deterministic", "monte-carlo"], help="Default: the config's."
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
    parser.add_argument(
        "--judge", metavar="CKPT", help="AR checkpoint scoring the samples: generative perplexity."
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
        from oemdm_core.errors import ConfigError

        raise ConfigError(
            f"--reverse-scheduler off: order '{model.order.name}' has no learned reverse "
            "scheduler to switch off (orders that have one: lomdm); use 'learned'"
        )
    model.order.reverse_scheduler_enabled = False


def load(checkpoint: str, registry, device: str = "cpu"):
    """(model, experiment config, Data without splits, checkpoint dir) of a checkpoint."""
    from oemdm_core.device import resolve_device
    from oemdm_core.errors import CheckpointError, ConfigError
    from oemdm_core.experiment import parse_config
    from oemdm_core.loader import build_data
    from oemdm_core.model import CONFIG_FILE, OeMDM
    from oemdm_core.training_state import (
        EXPERIMENT_FILE,
        MODEL_DIR,
        TOKENIZER_FILE,
        find_checkpoint,
        load_json,
    )

    device = str(resolve_device(device, "--device"))
    ckpt = find_checkpoint(checkpoint)
    try:
        cfg = parse_config(load_json(ckpt / EXPERIMENT_FILE))
    except ConfigError as exc:
        raise CheckpointError(f"{ckpt / EXPERIMENT_FILE}: {exc}") from None
    model = OeMDM.from_pretrained(ckpt / MODEL_DIR, registry=registry, map_location=device)
    if model.length != cfg.data.length:
        raise CheckpointError(
            f"{ckpt / MODEL_DIR / CONFIG_FILE}: length {model.length} disagrees with the "
            f"data.length {cfg.data.length} the weights were trained at "
            f"({ckpt / EXPERIMENT_FILE}); was config.json edited? Use --length to "
            "evaluate or sample another length"
        )
    data = build_data(cfg, registry, load_json(ckpt / TOKENIZER_FILE), splits=())
    return model.to(device), cfg, data, ckpt


def metrics_table(metrics: dict[str, object]) -> str:
    """A two-column text table of `metrics`."""
    width = max(len(k) for k in metrics)
    lines = []
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from oemdm_core.evaluation import evaluate
    from oemdm_core.loader import build_data
    from oemdm_core.registry import registry

    model, cfg, _, ckpt = load(args.checkpoint, registry, args.device)
    set_reverse_scheduler(model, args.reverse_scheduler)
    ev = cfg.evaluation
    updates = {
        "split": args.split or ev.split,
        "mode": args.mode or ev.mode,
        "num_times": ev.num_times if args.num_times is None else args.num_times,
        "max_sequences": ev.max_sequences
        if args.max_sequences is None
        else (args.max_sequences or None),
    }
    cfg = cfg.model_copy(update={"evaluation": ev.model_copy(update=updates)})
    if args.length is not None:
        if args.length > model.backbone.max_length:
            raise ValueError(
                f"--length {args.length} exceeds the model's maximum sequence length "
                f"{model.backbone.max_length}"
            )
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"length": args.length})})
    from oemdm_core.loader import eval_batches
    from oemdm_core.training_state import TOKENIZER_FILE, load_json

    data = build_data(cfg, registry, load_json(ckpt / TOKENIZER_FILE), splits=("evaluation",))
    batches = eval_batches(data.evaluation, cfg.evaluation.batch_size, cfg.evaluation.max_sequences)
    if not args.no_progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="eval", unit="batch", dynamic_ncols=True, leave=False)
    result = evaluate(
        model,
        batches,
        cfg.evaluation.mode,
        cfg.evaluation.num_times,
        cfg.evaluation.seed,
        steps=args.steps,
    )
    metrics: dict[str, object] = {
        "checkpoint": str(ckpt),
        "split": cfg.evaluation.split,
        "order": model.order.name,
        "reverse_scheduler": args.reverse_scheduler,
        **result.as_dict(),
    }
    if args.samples:
        from oemdm_core.sample_metrics import sample_quality

        spec = cfg.sampling.sampler
        judge = load(args.judge, registry, args.device)[0] if args.judge else None
        sampler = registry.build("sampler", spec.name, **spec.options)
        seed = cfg.evaluation.seed
        metrics.update(sample_quality(model, sampler, args.samples, judge, seed=seed))
    print(metrics_table(metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0
