"""The `oemdm` command line: `main` and one module per subcommand."""

from oemdm_core.cli.main import main

__all__ = ["main"]
