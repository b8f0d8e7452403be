"""`oemdm check-plugin NAME`: run the conformance kits (`oemdm_core.testing`) on the
components of an installed plugin and print a pass/fail table.

NAME is a plugin (entry-point) name, e.g. `schedules`, or one component as `kind:name`,
e.g. `order:block`. Exit code 0 when every check passes, 1 when one fails.

Every component is built with its default options (from seed 0) and checked by the kit its
kind names in `oemdm_core.plugin.kinds`, as `kit(component, registry=registry)`. A
component whose default options do not build (one that needs a path, say) is listed as
skipped, with the reason.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from oemdm_core.errors import ConfigError, UnknownComponentError, closest
from oemdm_core.plugin.kinds import KIND

if TYPE_CHECKING:
    from oemdm_core.plugin.registry import Entry, Registry

NAME = "check-plugin"
HELP = "Run the conformance kits on the components of an installed plugin (every kind)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", help="Plugin (entry-point) name as listed by `oemdm plugins`, or KIND:NAME."
    )


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


def check(registry: Registry, entry: Entry) -> tuple[str, str]:
    """(kit, result) for one component: "pass", "FAIL: …" or "skipped (…)"."""
    import torch

    from oemdm_core import testing

    kit_name = KIND[entry.kind].kit
    kit = getattr(testing, kit_name)  # the kit the table names: one of testing's kits
    failures = (testing.ConformanceError, ValueError, TypeError, LookupError, RuntimeError, OSError)
    try:
        with torch.random.fork_rng(devices=[]):  # learned components draw their weights
            torch.manual_seed(0)
            component = registry.build(entry.kind, entry.name)
    except ConfigError as exc:
        return "-", f"skipped (its default options do not build: {_one_line(exc)})"
    except failures as exc:
        return (
            kit_name,
            f"FAIL: built with its default options, {type(exc).__name__}: {_one_line(exc)}",
        )
    try:
        kit(component, registry=registry)
    except failures as exc:
        return kit_name, f"FAIL: {_one_line(exc)}"
    return kit_name, "pass"


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def run(args: argparse.Namespace, registry: Registry | None = None) -> int:
    from oemdm_core.plugin.registry import resolve_registry

    registry = resolve_registry(registry)
    rows: list[tuple[str, str, str, str]] = []
    for entry in resolve(registry, args.name):
        rows.append((entry.kind, entry.name, *check(registry, entry)))
    failed = sum(r[3].startswith("FAIL") for r in rows)
    header = ("KIND", "NAME", "CHECK", "RESULT")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3])
    passed = sum(r[3] == "pass" for r in rows)
    skipped = len(rows) - passed - failed
    print(f"\n{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0
