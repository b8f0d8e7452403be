"""What every benchmark script shares: its command line (`--out`, `--seeds`, `--threads`,
`--json`), the header of its report (command, machine, date), markdown tables and the
results file.

    p = harness.new_parser(__doc__)
    harness.add_seeds(p, "0,1"); harness.add_threads(p); harness.add_json(p)
    args = harness.parse(p, argv)                    # sets the torch threads of --threads
    print(harness.run_header(__file__, argv))
    print(harness.table(["model", "bits/token"], [["mdm", "1.234"]]))
    harness.write_results(args.json, rows)

Scripts import it (and each other) by file name, `import harness`: that is what resolves
when run as `python benchmarks/X.py`, and `benchmarks/__init__.py` makes it resolve under
`python -m benchmarks.X` too.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from oemdm_core.cli.args import positive_int, write_json_report


# -- command line --------------------------------------------------------------------------
def new_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose `--help` shows the script's docstring `doc` as written."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def seed_list(text: str) -> tuple[int, ...]:
    """`--seeds`: comma-separated integers, e.g. "0,1"."""
    try:
        seeds = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        seeds = ()
    if not seeds:
        raise argparse.ArgumentTypeError(
            f"got {text!r}; expected comma-separated integers, e.g. 0,1"
        )
    return seeds


def add_out(parser: argparse.ArgumentParser, what: str) -> None:
    """`--out PATH`: where the results go; `what` says what it is and its default."""
    parser.add_argument("--out", type=Path, help=what)


def add_seeds(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """`--seeds 0,1` as a tuple of ints (None when not given and `default` is None)."""
    parser.add_argument(
        "--seeds",
        type=seed_list,
        default=None if default is None else seed_list(default),
        help=f"comma-separated seeds (default {default or 'the profile’s'})",
    )


def add_threads(parser: argparse.ArgumentParser, default: int | None = None) -> None:
    """`--threads N`: torch CPU threads of this process, set by `parse` (default: torch's
    own choice when `default` is None)."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=default,
        help=f"torch CPU threads (default {default or 'torch’s'})",
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    """`--json FILE`: also write the results as JSON (see `write_results`)."""
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results here")


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """`parser.parse_args(argv)`, then `torch.set_num_threads(--threads)` when it is set."""
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return args


# -- report header -------------------------------------------------------------------------
def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """How to rerun: `python benchmarks/<script file> <arguments>` (`argv`: sys.argv[1:])."""
    args = " ".join(sys.argv[1:] if argv is None else argv)
    return f"python benchmarks/{Path(script).name} {args}".rstrip()


def machine(workers: int = 1, device: str = "cpu") -> str:
    """The host, its CPUs, the processes × torch threads used, torch's version and, on a
    CUDA `device`, the GPU's name."""
    threads = 1 if workers > 1 else torch.get_num_threads()
    text = (
        f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, {workers} worker "
        f"process(es) × {threads} torch thread(s), torch {torch.__version__}"
    )
    if device.startswith("cuda") and torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(torch.device(device))}"
    return text


def run_header(
    script: str,
    argv: Sequence[str] | None = None,
    machine_text: str | None = None,
    started: datetime | None = None,
) -> str:
    """Markdown lines `Command:`, `Machine:` and `Date:` (UTC; default now), each ending
    in a hard line break, for the top of a report."""
    started = started or datetime.now(timezone.utc)
    return (
        f"Command: `{command_line(script, argv)}`  \n"
        f"Machine: {machine_text or machine()}  \n"
        f"Date: {started:%Y-%m-%d %H:%M} UTC  \n"
    )


# -- tables and results --------------------------------------------------------------------
def table_row(cells: Iterable[Any]) -> str:
    """One markdown table row: `| a | b |`."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table_head(columns: Sequence[str], align: Sequence[str] | None = None) -> str:
    """The header row and the rule; `align` per column: "" (default) or "right"."""
    rule = "|" + "".join("---:|" if a == "right" else "---|" for a in align or [""] * len(columns))
    return table_row(columns) + "\n" + rule


def table(columns: Sequence[str], rows: Iterable[Iterable[Any]]) -> str:
    """A markdown table of `columns` and `rows` (cells already formatted, or str()-ed)."""
    return "\n".join([table_head(columns), *(table_row(r) for r in rows)])


def write_results(path: str | os.PathLike, data: Any) -> Path:
    """`data` as JSON at `path` (parent folders made); a float that is not finite (the
    standard error of one seed) is written as null, so the file stays valid JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_report(str(path), data)
    return path
