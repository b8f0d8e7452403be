"""The core's layers: which sub-package may import which, and how long a module may grow.

Layers, lowest first: the foundation (`errors`, `files`), `plugin` (component
base, hooks, registry), `interfaces` (what plugins implement), `nelbo` (the math), `model`
(`OeMDM`), `runtime` (training, checkpoints, evaluation), `cli`, `integrations` (adapters
for other tools, e.g. lm-eval). A module imports only from
its own layer and those below; `testing` (the conformance kits) sits on the model layer.
Every import counts: those under `if TYPE_CHECKING:` and the dotted names of string
annotations bind modules as much as the others (`oemdm_core.testing.imports`). No modules of
the core, nor of the built-in plugins, import each other in a cycle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from oemdm_core.testing.imports import (
    find_imports,
    format_cycles,
    import_cycles,
    module_graph,
    module_name,
    package_modules,
)

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "oemdm_core"
RANK = {
    "errors": 0,
    "files": 0,
    "plugin": 1,
    "interfaces": 2,
    "nelbo": 3,
    "model": 4,
    "testing": 5,
    "runtime": 5,
    "cli": 6,
    "integrations": 7,  # adapters for other tools (lm-eval), on top of everything
}
# Same rank, but neither may import the other.
SEPARATE = {("testing", "runtime"), ("runtime", "testing")}


def layer_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] != "oemdm_core" or len(parts) < 2:
        return None
    return parts[1]


def core_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every `oemdm_core` import of a core module, type-only ones included."""
    found = []
    for imp in find_imports(path, module_name(path, ROOT)):
        if imp.module == "oemdm_core" and imp.name is not None:  # `from oemdm_core import x`
            found.append((imp.line, f"oemdm_core.{imp.name}"))
        else:
            found.append((imp.line, imp.module))
    return [(line, name) for line, name in found if name.startswith("oemdm_core.")]


CORE_MODULES = sorted(p for p in CORE.rglob("*.py") if p.name != "__init__.py" or p.parent != CORE)


def test_every_core_module_belongs_to_a_layer():
    for path in CORE_MODULES:
        layer = path.relative_to(CORE).parts[0].removesuffix(".py")
        assert layer in RANK, f"{path.relative_to(ROOT)} lies in no layer of {sorted(RANK)}"


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda p: str(p.relative_to(CORE)))
def test_imports_point_down_the_layers(path: Path):
    here = path.relative_to(CORE).parts[0].removesuffix(".py")
    for line, name in core_imports(path):
        there = layer_of(name)
        if there is None or there not in RANK:
            pytest.fail(f"{path.relative_to(ROOT)}:{line} imports {name}, not a layer's module")
        assert RANK[there] <= RANK[here] and (here, there) not in SEPARATE, (
            f"{path.relative_to(ROOT)}:{line} ({here}) imports {name} ({there}), a layer above "
            "or beside it"
        )


def test_the_foundation_imports_nothing_of_the_core():
    for name in ("errors.py", "files.py"):
        assert core_imports(CORE / name) == [], name


def test_no_core_module_is_in_an_import_cycle():
    graph = module_graph(package_modules(CORE))
    cycles = import_cycles(graph)
    assert cycles == [], format_cycles(graph, cycles)


def test_no_plugin_module_is_in_an_import_cycle():
    modules = dict(package_modules(CORE))
    for package in sorted((ROOT / "plugins").iterdir()):
        if (package / "__init__.py").exists():
            modules.update(package_modules(package))
    graph = module_graph(modules)
    cycles = import_cycles(graph)
    assert cycles == [], format_cycles(graph, cycles)


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        (root / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "pkg" / name).write_text(source)
    return root / "pkg"


def test_a_cycle_of_type_only_imports_is_a_cycle(tmp_path: Path):
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
            "b.py": "from pkg import c\n",
            "c.py": "def f(x: 'pkg.a.A') -> None: ...\n",
            "d.py": "import pkg.a\n",  # imports the cycle, is not in it
        },
    )
    graph = module_graph(package_modules(package))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a"}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert import_cycles({m: targets - {"pkg.a"} for m, targets in graph.items()}) == []


def test_a_type_only_import_of_a_higher_layer_is_counted(tmp_path: Path):
    module = tmp_path / "oemdm_core" / "interfaces" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from oemdm_core.model.oemdm import OeMDM\n"
        "def f(m: 'oemdm_core.runtime.trainer.Trainer') -> None: ...\n"
    )
    found = {(imp.module, imp.type_only) for imp in find_imports(module, "oemdm_core.interfaces.x")}
    assert ("oemdm_core.model.oemdm", True) in found
    assert ("oemdm_core.runtime.trainer.Trainer", True) in found
