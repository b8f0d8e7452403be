"""The core's layers: which sub-package may import which, and how long a module may grow.

Layers, lowest first: the foundation (`errors`, `files`, `compat`), `plugin` (component
base, hooks, registry), `interfaces` (what plugins implement), `nelbo` (the math), `model`
(`OeMDM`), `runtime` (training, checkpoints, evaluation), `cli`. A module imports only from
its own layer and those below; `testing` (the conformance kits) sits on the model layer.
Imports under `if TYPE_CHECKING:` are annotations, not dependencies, and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "oemdm_core"
RANK = {
    "errors": 0,
    "files": 0,
    "compat": 0,
    "plugin": 1,
    "interfaces": 2,
    "nelbo": 3,
    "model": 4,
    "testing": 5,
    "runtime": 5,
    "cli": 6,
}
# Same rank, but neither may import the other.
SEPARATE = {("testing", "runtime"), ("runtime", "testing")}


def layer_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] != "oemdm_core" or len(parts) < 2:
        return None
    return parts[1]


def runtime_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every `oemdm_core` import outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "oemdm_core":  # `from oemdm_core import x`: x is a sub-module
                found += [(node.lineno, f"oemdm_core.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.startswith("oemdm_core.")]


CORE_MODULES = sorted(p for p in CORE.rglob("*.py") if p.name != "__init__.py" or p.parent != CORE)


def test_every_core_module_belongs_to_a_layer():
    for path in CORE_MODULES:
        layer = path.relative_to(CORE).parts[0].removesuffix(".py")
        assert layer in RANK, f"{path.relative_to(ROOT)} lies in no layer of {sorted(RANK)}"


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_imports_point_down_the_layers(path: Path):
    here = path.relative_to(CORE).parts[0].removesuffix(".py")
    for line, name in runtime_imports(path):
        there = layer_of(name)
        if there is None or there not in RANK:  # `oemdm_core.<old path>`: see below
            pytest.fail(f"{path.relative_to(ROOT)}:{line} imports {name}, not a layer's module")
        assert RANK[there] <= RANK[here] and (here, there) not in SEPARATE, (
            f"{path.relative_to(ROOT)}:{line} ({here}) imports {name} ({there}), a layer above "
            "or beside it"
        )


def test_the_foundation_imports_nothing_of_the_core():
    for name in ("errors.py", "files.py", "compat.py"):
        assert runtime_imports(CORE / name) == [], name
