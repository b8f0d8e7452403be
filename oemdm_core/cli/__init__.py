"""The `oemdm` command line: `main` (in `entry`) and one module per subcommand."""

from oemdm_core.cli.entry import COMMANDS, build_parser, main, one_line

__all__ = ["COMMANDS", "build_parser", "main", "one_line"]
