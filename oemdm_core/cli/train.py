"""`oemdm train`: train the default (or a given) experiment config."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from oemdm_core.plugin.registry import Registry

NAME = "train"
HELP = "Train a model (no arguments: LoMDM on the pydoc corpus, ~5 min on a CPU)."


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """`-c FILE` and repeatable `--set key=value`, shared by `train` and `config show`."""
    parser.add_argument("-c", "--config", help="YAML or JSON experiment config.")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Dotted override, e.g. --set training.steps=100 (repeatable; see `oemdm config show`).",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--resume", metavar="DIR", help="Continue the run in DIR exactly (newest checkpoint)."
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Start over in a run directory that holds a run (deletes its checkpoints and logs).",
    )


def resolve_config(args: argparse.Namespace):
    """The experiment config of a train/config invocation (resume: the saved one as base)."""
    from oemdm_core.runtime.checkpoints import (
        EXPERIMENT_FILE,
        LATEST_CHECKPOINT,
        checkpoint_versions,
        load_json,
    )
    from oemdm_core.runtime.experiment import load_config

    base = None
    if getattr(args, "resume", None) and not args.config:
        versions = [v for v in checkpoint_versions(args.resume) if (v / EXPERIMENT_FILE).is_file()]
        if not versions:
            where = Path(args.resume) / LATEST_CHECKPOINT
            raise FileNotFoundError(f"--resume {args.resume}: no checkpoint in {where}")
        base = load_json(versions[0] / EXPERIMENT_FILE)
        base["training"]["stop_after"] = None  # a resumed run goes on to training.steps
    return load_config(args.config, args.overrides, base=base)


def run(args: argparse.Namespace, registry: Registry | None = None) -> int:
    from oemdm_core.runtime.trainer import fit

    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue or start over")
    cfg = resolve_config(args)
    result = fit(cfg, registry, resume=args.resume, overwrite=args.overwrite)
    if result.evaluation is not None and int(os.environ.get("RANK", "0")) == 0:
        ev = result.evaluation
        print(
            f"step {result.step}: {cfg.evaluation.split} {ev.bits_per_token:.4f} bits/token "
            f"(± {ev.stderr_bits:.4f}), perplexity {ev.perplexity:.3f} [{ev.mode}, "
            f"{ev.num_sequences} sequences × {ev.tokens_per_sequence} tokens]"
        )
        for i, text in enumerate(result.samples):
            print(f"--- sample {i} ---\n{text}")
        print(f"checkpoint: {result.checkpoint}")
        print(f"TensorBoard: tensorboard --logdir {result.run_dir / 'tb'}")
    return 0
