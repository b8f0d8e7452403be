"""`oemdm check-plugin NAME`: run the conformance kit (`oemdm_core.testing.kits`) on the
components of an installed plugin and print a pass/fail table.

NAME is a plugin (entry-point) name, e.g. `schedules`, or one component as `kind:name`,
e.g. `order:block`. Exit code 0 when every check passes, 1 when one fails.

Schedules are checked with `check_schedule`. Orders are built into a tiny model (a `tiny`
transformer over V=3, L=8) with every registered base schedule and checked with
`check_order`. Other kinds have no conformance checks yet and are listed as skipped.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from oemdm_core.errors import UnknownComponentError, closest

if TYPE_CHECKING:
    from oemdm_core.plugin.registry import Entry, Registry

NAME = "check-plugin"
HELP = "Run the conformance kit on an installed plugin's schedules and orders."

CHECK_VOCAB, CHECK_LENGTH = 3, 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", help="Plugin (entry-point) name as listed by `oemdm plugins`, or KIND:NAME."
    )


def current_registry() -> Registry:
    """The process-wide registry (looked up at call time, so tests can swap it)."""
    return importlib.import_module("oemdm_core.plugin.registry").registry


def resolve(registry: Registry, target: str) -> list[Entry]:
    """The registry entries named by `target` (`kind:name` or a plugin name)."""
    if ":" in target:
        kind, name = target.split(":", 1)
        return [registry.entry(kind, name)]
    entries = [e for e in registry.entries() if e.plugin == target]
    if entries:
        return entries
    plugins = registry.plugins()
    hint = closest(target, plugins)
    raise UnknownComponentError(
        f"no loaded plugin named {target!r}; loaded plugins: {', '.join(plugins) or '(none)'}"
        + (f" (did you mean '{hint}'?)" if hint else "")
        + "; or name one component as KIND:NAME, e.g. order:block"
    )


def checks_for(registry: Registry, entry: Entry) -> list[tuple[str, Callable[[], None]]]:
    """(label, check) pairs for one component; empty for kinds without checks."""
    from oemdm_core.testing.kits import check_order, check_schedule

    if entry.kind == "schedule":
        return [("check_schedule", lambda: check_schedule(registry.build("schedule", entry.name)))]
    if entry.kind != "order":
        return []
    from oemdm_core.model.oemdm import OeMDM

    def order_check(schedule: str) -> Callable[[], None]:
        def run() -> None:
            model = OeMDM.from_config(
                {
                    "vocab_size": CHECK_VOCAB,
                    "length": CHECK_LENGTH,
                    "backbone": {"name": "transformer", "preset": "tiny"},
                    "order": entry.name,
                    "schedule": schedule,
                },
                registry=registry,
            )
            check_order(model.order, model=model)

        return run

    return [(f"check_order (schedule {s})", order_check(s)) for s in registry.available("schedule")]


def run(args: argparse.Namespace) -> int:
    from oemdm_core.testing.kits import ConformanceError

    registry = current_registry()
    rows: list[tuple[str, str, str, str]] = []
    failed = 0
    for entry in resolve(registry, args.name):
        checks = checks_for(registry, entry)
        if not checks:
            rows.append((entry.kind, entry.name, "-", f"skipped (no checks for {entry.kind}s)"))
        for label, check in checks:
            try:
                check()
            except (ConformanceError, ValueError, TypeError, LookupError, RuntimeError) as exc:
                failed += 1
                message = " ".join(str(exc).split())
                rows.append((entry.kind, entry.name, label, f"FAIL: {message}"))
            else:
                rows.append((entry.kind, entry.name, label, "pass"))
    header = ("KIND", "NAME", "CHECK", "RESULT")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3])
    passed = sum(r[3] == "pass" for r in rows)
    print(f"\n{passed} passed, {failed} failed")
    return 1 if failed else 0
