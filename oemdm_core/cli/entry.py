"""The `oemdm` command line: one module per subcommand under `oemdm_core.cli`.

Each command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`
(commands that build components take `registry: Registry | None = None` after `args`; the
default is the global registry). Command modules import torch inside `run` and the registry
loads its plugins on first use, so `oemdm --help` and argument errors stay fast.

Errors: every `OeMDMError` / `ValueError` / `FileNotFoundError` is one line and exit code 2;
any other exception is one line too, plus "(run with --debug for the traceback)", exit 1.
The first SIGINT or SIGTERM stops any command, in any phase, with exit code 130 (SIGINT)
or 143 (SIGTERM) (a training run saves a checkpoint at the step boundary first). Output to
a closed pipe (`oemdm sample … | head`) ends the command quietly with exit code 0.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import warnings

COMMANDS = ("train", "eval", "sample", "plugins", "check_plugin", "config")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oemdm", description="Order-expressive masked diffusion language models."
    )
    parser.add_argument(
        "--debug", action="store_true", help="Show full tracebacks instead of one-line errors."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS:
        module = importlib.import_module(f"oemdm_core.cli.{module_name}")
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        command.set_defaults(_run=module.run)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings of oemdm as one line `oemdm: warning: …`; others as Python shows them."""
    from oemdm_core.errors import OeMDMWarning

    if issubclass(category, OeMDMWarning):
        print(f"oemdm: warning: {message}", file=file or sys.stderr)
    else:
        _default_show(message, category, filename, lineno, file, line)


_default_show = warnings.showwarning


def one_line(exc: BaseException) -> str:
    """The message of `exc` on one line (multi-problem config errors joined with '; ')."""
    text = "; ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    from oemdm_core.runtime.interrupt import install_handlers

    handlers = install_handlers()  # first: a signal during start-up is not lost
    try:
        return _main(argv)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from oemdm_core.errors import OeMDMDeprecationWarning

    with warnings.catch_warnings():  # restores the filters and `showwarning` afterwards
        warnings.showwarning = _show_warning
        # shown whatever the filters: a deprecated flag is on the user's own command line
        warnings.filterwarnings("always", category=OeMDMDeprecationWarning)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """`args._run(args)`, with the errors turned into one line and an exit code (module)."""
    from oemdm_core.errors import OeMDMError

    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # `oemdm sample … | head`: the reader has gone, stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush does not fail too
        return 0
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        print(
            f"oemdm {args.command}: {one_line(exc) if str(exc) else 'interrupted'}", file=sys.stderr
        )
        return getattr(exc, "exit_code", 130)
    except (OeMDMError, ValueError, FileNotFoundError) as exc:
        if args.debug:
            raise
        print(f"oemdm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the catch-all: no traceback unless asked for
        if args.debug:
            raise
        kind = _error_kind(exc)
        print(
            f"oemdm {args.command}: error: {kind}: {one_line(exc)} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1


def _error_kind(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "OutOfMemoryError" or isinstance(exc, MemoryError):
        return "out of memory (use a smaller --batch-size / batch_size)"
    return name
