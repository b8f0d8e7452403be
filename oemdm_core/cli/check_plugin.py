"""`oemdm check-plugin NAME`: run the conformance kits (`oemdm_core.testing`) on the
components of an installed plugin and print a pass/fail table.

NAME is a plugin (entry-point) name, e.g. `schedules`, or one component as `kind:name`,
e.g. `order:block`. Exit code 0 when every check passes, 1 when one fails.

Every component is built with its default options. Schedules go through `check_schedule`;
orders are built into a tiny model of the reference backbone (V=3, L=8) with every
registered base schedule and go through `check_order`; samplers go through
`check_sampler` (on the reference models) and backbones through `check_backbone`. Other
kinds have no kit and are listed as skipped.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from oemdm_core.errors import UnknownComponentError, closest

if TYPE_CHECKING:
    from oemdm_core.plugin.registry import Entry, Registry

NAME = "check-plugin"
HELP = "Run the conformance kits on an installed plugin's schedules, orders, samplers, backbones."

CHECK_VOCAB, CHECK_LENGTH = 3, 8

Check = tuple[str, Callable[[], None]]


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


def checks_for(registry: Registry, entry: Entry) -> list[Check]:
    """(label, check) pairs for one component; empty for kinds without a kit."""
    from oemdm_core.testing import check_backbone, check_sampler, check_schedule

    def build():
        return registry.build(entry.kind, entry.name)

    if entry.kind == "schedule":
        return [("check_schedule", lambda: check_schedule(build()))]
    if entry.kind == "sampler":
        return [("check_sampler", lambda: check_sampler(build(), registry=registry))]
    if entry.kind == "backbone":
        return [("check_backbone", lambda: check_backbone(build()))]
    if entry.kind == "order":
        return [
            (f"check_order (schedule {s})", order_check(registry, entry.name, s))
            for s in registry.available("schedule")
        ]
    return []


def order_check(registry: Registry, order: str, schedule: str) -> Callable[[], None]:
    """`check_order` on a model of the reference backbone with `order` and `schedule`."""
    import torch

    from oemdm_core.model.oemdm import OeMDM
    from oemdm_core.testing import ReferenceBackbone, check_order

    def run() -> None:
        with torch.random.fork_rng(devices=[]):  # learned orders draw their weights
            torch.manual_seed(0)
            built = registry.build("order", order)
        backbone = ReferenceBackbone(vocab_size=CHECK_VOCAB, max_length=CHECK_LENGTH)
        model = OeMDM(backbone, built, registry.build("schedule", schedule), length=CHECK_LENGTH)
        check_order(model.order, model=model)

    return run


def run(args: argparse.Namespace, registry: Registry | None = None) -> int:
    from oemdm_core.plugin.registry import resolve_registry
    from oemdm_core.testing import ConformanceError

    registry = resolve_registry(registry)
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
