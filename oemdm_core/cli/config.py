"""`oemdm config show`: the resolved experiment config with every field's description.

The component names and options of a config file or `--set` overrides are checked against
the installed plugins (which imports them, and torch); the defaults alone need no check,
so plain `oemdm config show` stays fast.
"""

from __future__ import annotations

import argparse

from oemdm_core.cli.train import add_config_arguments
from oemdm_core.plugin.registry import Registry

NAME = "config"
HELP = "Show the experiment config (defaults, or a file with --set overrides), with descriptions."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["show"], help="show: print the resolved config.")
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="Print plain JSON (no descriptions).")


def run(args: argparse.Namespace, registry: Registry | None = None) -> int:
    import json

    from oemdm_core.runtime.experiment import (
        ExperimentConfig,
        check_components,
        commented_config_yaml,
        load_config,
    )

    cfg = load_config(args.config, args.overrides)
    if args.config or args.overrides:
        check_components(cfg, registry)
    if args.json:
        print(json.dumps(cfg.to_dict(), indent=2))
    else:
        print(commented_config_yaml(ExperimentConfig, cfg.to_dict()))
    return 0
