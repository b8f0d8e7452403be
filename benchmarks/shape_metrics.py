"""The shape of the code, as a markdown table: import cycles, what plugins import from the
core, and the longest modules and functions.

- import cycles among the modules of `oemdm_core` and `plugins/` (type-only imports and
  string annotations count): groups of modules that import each other, the modules in them,
  and the simple cycles through them;
- the distinct names the plugin packages import from `oemdm_core`, and from how many
  distinct modules (a module imported whole, `from oemdm_core.nelbo import terms as N`,
  counts each attribute used, `terms.corrupt`, as a name of that module);
- the five longest modules and functions (lines), and how many exceed 400 / 60 lines.

    python benchmarks/shape_metrics.py                 # this checkout
    python benchmarks/shape_metrics.py --root /tmp/base  # another checkout, same measures
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from oemdm_core.testing.imports import (
    find_imports,
    import_cycles,
    module_graph,
    package_modules,
    resolve,
)

LONG_MODULE = 400  # lines
LONG_FUNCTION = 60  # lines
TOP = 5
CYCLE_CAP = 100_000  # stop counting simple cycles here


def all_modules(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """(core modules, plugin modules): dotted name -> file."""
    core = package_modules(root / "oemdm_core")
    plugins: dict[str, Path] = {}
    for package in sorted((root / "plugins").iterdir()):
        if (package / "__init__.py").exists():
            plugins.update(package_modules(package))
    return core, plugins


def simple_cycles(graph: dict[str, set[str]], groups: list[list[str]]) -> int:
    """Count the simple cycles (no module twice) of `graph`, each once, up to CYCLE_CAP."""

    def walk(node: str, start: str, rank: dict[str, int], seen: set[str], budget: int) -> int:
        found = 0
        for nxt in graph[node]:
            if nxt == start:
                found += 1
            elif nxt in rank and rank[nxt] > rank[start] and nxt not in seen:
                found += walk(nxt, start, rank, seen | {nxt}, budget - found)
            if found >= budget:
                break
        return found

    count = 0
    for group in groups:
        rank = {m: i for i, m in enumerate(group)}
        for start in group:  # the cycles whose first member (in `rank`) is `start`
            count += walk(start, start, rank, {start}, CYCLE_CAP - count)
            if count >= CYCLE_CAP:
                return CYCLE_CAP
    return count


def plugin_imports(core: dict[str, Path], plugins: dict[str, Path]) -> dict[str, set[str]]:
    """Core module -> the names plugin modules import from it."""
    names: dict[str, set[str]] = {}
    for name, path in plugins.items():
        tree = ast.parse(path.read_text())
        for imp in find_imports(path, name):
            if imp.module.split(".")[0] != "oemdm_core" or imp.name is None:
                continue
            target = resolve(imp, core)
            if target is None:
                continue
            if target == f"{imp.module}.{imp.name}":  # a module imported whole: its uses
                alias = imp.name
                for node in ast.walk(tree):
                    if isinstance(node, ast.alias) and node.name == imp.name and node.asname:
                        alias = node.asname
                used = {
                    node.attr
                    for node in ast.walk(tree)
                    if isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == alias
                }
                names.setdefault(target, set()).update(used)
            else:
                names.setdefault(target, set()).add(imp.name)
    return names


def lengths(modules: dict[str, Path], root: Path) -> tuple[list, list]:
    """([(lines, file)] of modules, [(lines, file:qualified name)] of functions), longest first."""
    module_lines, function_lines = [], []
    for path in modules.values():
        source = path.read_text()
        where = str(path.relative_to(root))
        module_lines.append((len(source.splitlines()), where))

        def visit(node: ast.AST, prefix: str, where: str = where) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                    qual = f"{prefix}{child.name}"
                    size = child.end_lineno - child.lineno + 1
                    function_lines.append((size, f"{where}:{qual}"))
                    visit(child, qual + ".")
                elif isinstance(child, ast.ClassDef):
                    visit(child, f"{prefix}{child.name}.")
                else:
                    visit(child, prefix)

        visit(ast.parse(source), "")
    return sorted(module_lines, reverse=True), sorted(function_lines, reverse=True)


def report(root: Path) -> str:
    core, plugins = all_modules(root)
    modules = {**core, **plugins}
    graph = module_graph(modules)
    groups = import_cycles(graph)
    imported = plugin_imports(core, plugins)
    module_lines, function_lines = lengths(modules, root)
    distinct_names = {(m, n) for m, names in imported.items() for n in names}
    cycles = simple_cycles(graph, groups)
    rows = [
        ("modules measured (oemdm_core + plugins)", str(len(modules))),
        ("import cycles: groups of modules importing each other", str(len(groups))),
        ("import cycles: modules in those groups", str(sum(map(len, groups)))),
        (
            "import cycles: simple cycles",
            f"{cycles}{'+' if cycles >= CYCLE_CAP else ''}",
        ),
        ("names plugins import from oemdm_core (distinct)", str(len(distinct_names))),
        (
            "core modules plugins import them from (distinct)",
            f"{len(imported)}: " + ", ".join(f"`{m}` ({len(imported[m])})" for m in imported),
        ),
        (f"modules over {LONG_MODULE} lines", str(sum(n > LONG_MODULE for n, _ in module_lines))),
        (
            f"functions over {LONG_FUNCTION} lines",
            str(sum(n > LONG_FUNCTION for n, _ in function_lines)),
        ),
    ]
    rows += [
        (f"longest module {i + 1}", f"{n} `{w}`") for i, (n, w) in enumerate(module_lines[:TOP])
    ]
    rows += [
        (f"longest function {i + 1}", f"{n} `{w}`") for i, (n, w) in enumerate(function_lines[:TOP])
    ]
    lines = ["| measure | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows]
    for group in groups:
        lines.append("")
        lines.append("cycle group: " + ", ".join(f"`{m}`" for m in group))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="checkout to measure (default: this one)",
    )
    args = parser.parse_args()
    print(report(args.root.resolve()))


if __name__ == "__main__":
    main()
