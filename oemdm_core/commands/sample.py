"""`oemdm sample CKPT`: draw and print samples from a trained checkpoint."""

from __future__ import annotations

import argparse

from oemdm_core.commands.eval import add_reverse_scheduler_argument

NAME = "sample"
HELP = "Draw samples from a checkpoint and print them as text."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="Run directory or checkpoint directory.")
    parser.add_argument("-n", "--num-samples", type=int, default=4, help="Number of samples.")
    parser.add_argument("--sampler", help="Sampler registry name (default: the config's).")
    parser.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Sampler option, e.g. --set steps=256 (repeatable).",
    )
    parser.add_argument("--length", type=int, help="Sample length (default: the model's).")
    parser.add_argument("--prompt", default="", help="Text fixed at the start of every sample.")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, …")
    add_reverse_scheduler_argument(parser)


def run(args: argparse.Namespace) -> int:
    import torch
    import yaml

    from oemdm_core.commands.eval import load, set_reverse_scheduler
    from oemdm_core.errors import ConfigError
    from oemdm_core.registry import registry

    model, cfg, data, _ = load(args.checkpoint, registry, args.device)
    set_reverse_scheduler(model, args.reverse_scheduler)
    spec = cfg.sampling.sampler
    name = args.sampler or spec.name
    options = dict(spec.options) if name == spec.name else {}
    for item in args.options:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. steps=256")
        key, value = item.split("=", 1)
        options[key] = yaml.safe_load(value)
    sampler = registry.get("sampler", name)
    sampler = sampler.from_options(sampler.validate_options(prefix=f"sampler[{name}]", **options))
    length = args.length or model.length
    if length > model.backbone.max_length:
        raise ValueError(
            f"--length {length} exceeds the model's maximum sequence length {model.backbone.max_length}"
        )
    fixed = None
    if args.prompt:
        fixed = torch.tensor(data.tokenizer.encode(args.prompt), dtype=torch.long)
    g = torch.Generator(device=model.device).manual_seed(args.seed)
    result = sampler.sample(model, args.num_samples, length=length, generator=g, fixed=fixed)
    for i, row in enumerate(result.tokens.cpu()):
        print(f"--- sample {i} ---\n{data.decode(row.tolist())}")
    return 0
