"""The `oemdm` command line: one module per subcommand under `oemdm_core.commands`.

Each command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from oemdm_core.errors import OeMDMError

COMMANDS = ("train", "eval", "sample", "plugins", "check_plugin", "config")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oemdm", description="Order-expressive masked diffusion language models."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS:
        try:
            module = importlib.import_module(f"oemdm_core.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"oemdm_core.commands.{module_name}":
                raise
            continue  # command not implemented in this version
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OeMDMError, ValueError, FileNotFoundError) as exc:
        print(f"oemdm {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
