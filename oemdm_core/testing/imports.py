"""Imports read from source, without running it: the module graph of a set of packages and
its cycles, and a plugin's imports of the core.

An import counts wherever it is written: at module level, inside a function, under
`if TYPE_CHECKING:`, or as a dotted name in a string annotation (`"oemdm_core.model.OeMDM"`).
Type-only imports bind the modules together as much as the others do: the type checker,
the reader and the next refactoring all follow them.

- `check_public_imports(package_dir)`: a plugin imports the core only through its public
  surface, `oemdm_core` and `oemdm_core.interfaces` (`oemdm_core.testing` too, in tests);
- `package_modules`, `module_graph`, `import_cycles`: what the layer test and
  `benchmarks/shape_metrics.py` count.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from oemdm_core.testing.common import ConformanceError

PUBLIC_MODULES = ("oemdm_core", "oemdm_core.interfaces")
TEST_MODULES = ("oemdm_core.testing",)  # also public to a plugin's own tests


@dataclass(frozen=True)
class Import:
    """One import in a module's source.

    module: the absolute dotted module imported from (relative imports resolved);
    name: the name imported from it (`from module import name`), None for `import module`
        and for a dotted name in a string annotation;
    line: where it is written; type_only: under `if TYPE_CHECKING:` or in a string annotation.
    """

    module: str
    name: str | None
    line: int
    type_only: bool


def module_name(path: Path, root: Path) -> str:
    """The dotted name of the module at `path`, a file under the directory `root`, which
    holds the top-level packages (`root/pkg/sub/mod.py` -> `pkg.sub.mod`)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package_dir: Path) -> dict[str, Path]:
    """Dotted name -> file of every module of the package at `package_dir` (its name is the
    directory's name)."""
    return {module_name(p, package_dir.parent): p for p in sorted(package_dir.rglob("*.py"))}


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return inside


def _annotations(tree: ast.Module) -> Iterator[ast.expr]:
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            yield node.annotation
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            yield node.returns


def _dotted_names(source: str) -> Iterator[str]:
    """The dotted names (`a.b.C`) in a string annotation; none if it does not parse."""
    try:
        expr = ast.parse(source, mode="eval")
    except SyntaxError:
        return
    for node in ast.walk(expr):
        if isinstance(node, ast.Attribute):
            dotted = ast.unparse(node)
            if all(part.isidentifier() for part in dotted.split(".")):
                yield dotted


def find_imports(path: Path, module: str) -> list[Import]:
    """Every import in the source of `module` (the file at `path`), type-only ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    type_checking = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        type_only = id(node) in type_checking
        if isinstance(node, ast.Import):
            found += [Import(a.name, None, node.lineno, type_only) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            source = ".".join(base + [node.module or ""]) if node.level else node.module or ""
            source = source.rstrip(".")
            found += [Import(source, a.name, node.lineno, type_only) for a in node.names]
    for annotation in _annotations(tree):
        for node in ast.walk(annotation):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found += [Import(d, None, node.lineno, True) for d in _dotted_names(node.value)]
    return found


def resolve(imported: Import, modules: Iterable[str]) -> str | None:
    """The module of `modules` that `imported` names: `from a import b` names the module
    `a.b` if there is one, else `a`; a dotted name names its longest prefix that is a
    module. None if none of `modules` is named."""
    known = set(modules)
    if imported.name is not None and f"{imported.module}.{imported.name}" in known:
        return f"{imported.module}.{imported.name}"
    parts = imported.module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return None


def module_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the other modules of `modules` it imports (type-only imports included).

    Only written imports count: importing `a.b.c` also runs `a/__init__.py` and
    `a/b/__init__.py`, but that is Python's doing, not an edge of the graph."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {resolve(imp, modules) for imp in find_imports(path, name)}
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or through others (the
    strongly connected components of `graph` with more than one module), each sorted, in
    sorted order. A graph without cycles gives []."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(groups)


def format_cycles(graph: dict[str, set[str]], groups: list[list[str]]) -> str:
    """One line per group: its members and, for each, the members it imports."""
    lines = []
    for group in groups:
        edges = [f"{m} -> {', '.join(sorted(graph[m] & set(group)))}" for m in group]
        lines.append("cycle among " + ", ".join(group) + ": " + "; ".join(edges))
    return "\n".join(lines)


def _is_test_module(module: str) -> bool:
    leaf = module.rpartition(".")[2]
    return "tests" in module.split(".") or leaf.startswith("test_") or leaf == "conftest"


def public_import_problems(package_dir: Path) -> list[str]:
    """`file:line imports X from Y` for each import by the package at `package_dir` of a core
    module other than the public ones (`oemdm_core`, `oemdm_core.interfaces`; in its tests,
    `oemdm_core.testing` too)."""
    core = package_modules(Path(__file__).resolve().parents[1])
    problems = []
    for name, path in package_modules(package_dir).items():
        allowed = PUBLIC_MODULES + (TEST_MODULES if _is_test_module(name) else ())
        for imp in find_imports(path, name):
            if imp.module.split(".")[0] != "oemdm_core":
                continue
            if imp.module in allowed and resolve(imp, core) in allowed:  # not `import nelbo`
                continue
            what = f"{imp.name} from {imp.module}" if imp.name else imp.module
            problems.append(f"{path}:{imp.line} imports {what}")
    return problems


def check_public_imports(package_dir: Path | str) -> None:
    """Raise `ConformanceError` if the plugin package at `package_dir` imports the core from
    anywhere but its public surface (`oemdm_core`, `oemdm_core.interfaces`; in tests,
    `oemdm_core.testing` too): the deeper modules may move between releases."""
    problems = public_import_problems(Path(package_dir))
    if problems:
        raise ConformanceError(
            f"plugin package '{Path(package_dir).name}' imports the core beyond "
            f"{' and '.join(PUBLIC_MODULES)}:\n  "
            + "\n  ".join(problems)
            + "\nimport these names from oemdm_core.interfaces or oemdm_core instead"
        )
