"""`oemdm plugins`: list the loaded components per kind, with the plugin and distribution
that supplied each, and the installed plugins that `OEMDM_DISABLE_PLUGINS` keeps out.

The listing is built from a fresh `Registry`, so it reflects the environment variable at
the time the command runs.
"""

from __future__ import annotations

import argparse
import json
from importlib.metadata import entry_points
from typing import Any

from oemdm_core.plugin.hookspecs import PROJECT
from oemdm_core.plugin.kinds import KINDS
from oemdm_core.plugin.registry import DISABLE_ENV, Registry

NAME = "plugins"
HELP = "List installed plugins and the components they register."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kind", choices=KINDS, default=None, help="Only list components of this kind."
    )
    parser.add_argument(
        "--json", action="store_true", help="Print machine-readable JSON instead of a table."
    )


def installed_plugins(disabled: list[str]) -> list[dict[str, Any]]:
    """Every entry point in the `oemdm` group: name, module, distribution, disabled flag."""
    found = []
    for ep in entry_points(group=PROJECT):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else None
        found.append(
            {
                "name": ep.name,
                "module": ep.value,
                "distribution": dist,
                "disabled": ep.name in disabled,
            }
        )
    return sorted(found, key=lambda p: p["name"])


def summary(cls: type) -> str:
    """The first paragraph of the class docstring on one line ("" if it has none)."""
    doc = (cls.__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def collect(registry: Registry, kind: str | None = None) -> dict[str, Any]:
    """The listing as plain data (what `--json` prints).

    Returns {"components": [{kind, name, plugin, distribution, summary}, ...],
    "plugins": [{name, module, distribution, disabled}, ...], "disabled": [...],
    "disable_env": "OEMDM_DISABLE_PLUGINS", "kind": kind or None}.
    """
    components = [
        {
            "kind": e.kind,
            "name": e.name,
            "plugin": e.plugin,
            "distribution": e.distribution,
            "summary": summary(e.cls),
        }
        for e in registry.entries(kind)
    ]
    installed = installed_plugins(registry.disabled)
    by_name = {p["name"]: p for p in installed}
    # Plugins registered by hand (not through entry points) are listed too.
    for name in registry.plugins():
        if name not in by_name:
            installed.append(
                {"name": name, "module": None, "distribution": None, "disabled": False}
            )
    return {
        "components": components,
        "plugins": sorted(installed, key=lambda p: p["name"]),
        "disabled": sorted(registry.disabled),
        "disable_env": DISABLE_ENV,
        "kind": kind,
    }


def format_table(data: dict[str, Any]) -> str:
    """Human-readable listing: one section per kind, then the plugins (with a `kind` filter:
    that kind's section, and only the plugins that supply it or are disabled)."""
    lines: list[str] = []
    rows = data["components"]
    plugins = data["plugins"]
    if data.get("kind"):
        suppliers = {r["plugin"] for r in rows}
        plugins = [p for p in plugins if p["name"] in suppliers or p["disabled"]]
    if rows:
        name_w = max(len(r["name"]) for r in rows)
        source_w = max(len(_source(r)) for r in rows)
    for kind in KINDS:
        of_kind = [r for r in rows if r["kind"] == kind]
        if not of_kind:
            continue
        lines.append(f"{kind}s:")
        for r in of_kind:
            lines.append(f"  {r['name']:<{name_w}}  {_source(r):<{source_w}}  {r['summary']}")
        lines.append("")
    if not rows:
        none = f"no {data['kind']} registered" if data.get("kind") else "no components registered"
        lines.extend([none, ""])
    lines.append("plugins:")
    plugin_w = max((len(p["name"]) for p in plugins), default=0)
    module_w = max((len(p["module"] or "-") for p in plugins), default=0)
    for p in plugins:
        where = p["distribution"] or "registered by hand"
        state = f"  DISABLED by {data['disable_env']}" if p["disabled"] else ""
        lines.append(f"  {p['name']:<{plugin_w}}  {p['module'] or '-':<{module_w}}  {where}{state}")
    unknown = sorted(set(data["disabled"]) - {p["name"] for p in data["plugins"]})
    if unknown:
        lines.append(
            f"{data['disable_env']} also names {', '.join(unknown)}, which no installed plugin is called"
        )
    return "\n".join(lines)


def _source(row: dict[str, Any]) -> str:
    return f"{row['plugin']} ({row['distribution'] or 'registered by hand'})"


def run(args: argparse.Namespace) -> int:
    data = collect(Registry(), args.kind)
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(format_table(data))
    return 0
