"""One public plugin surface: a plugin imports the core from `oemdm_core` and
`oemdm_core.interfaces` only, and both serve every name the built-in plugins need, typed
(`py.typed` ships with the package)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import oemdm_core
import oemdm_core.interfaces as interfaces
from oemdm_core.testing import ConformanceError
from oemdm_core.testing.imports import check_public_imports, public_import_problems

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGES = sorted(
    p for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists()
) + sorted(p.parent for p in (ROOT / "examples" / "plugins").glob("*/*.py"))


@pytest.mark.parametrize("package", PLUGIN_PACKAGES, ids=lambda p: p.name)
def test_a_plugin_imports_nothing_deeper_than_the_public_surface(package: Path):
    check_public_imports(package)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(source)
    return root


def test_a_deep_import_is_refused_naming_the_file_the_line_and_the_module(tmp_path: Path):
    package = write(
        tmp_path / "oemdm_deep",
        {
            "__init__.py": "from oemdm_core import Order, hookimpl\n",
            "est.py": "import torch\n\nfrom oemdm_core.nelbo import terms as N\n",
            "typed.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from oemdm_core.model.oemdm import OeMDM\n",
            "sub.py": "from oemdm_core import nelbo\n",
        },
    )
    with pytest.raises(ConformanceError) as caught:
        check_public_imports(package)
    message = str(caught.value)
    assert f"{package / 'est.py'}:3 imports terms from oemdm_core.nelbo" in message
    assert f"{package / 'typed.py'}:3 imports OeMDM from oemdm_core.model.oemdm" in message
    assert f"{package / 'sub.py'}:1 imports nelbo from oemdm_core" in message
    assert "__init__.py" not in message


def test_a_plugins_tests_may_use_the_conformance_kits(tmp_path: Path):
    package = write(
        tmp_path / "oemdm_kit",
        {
            "__init__.py": "from oemdm_core.interfaces import Order\n",
            "tests/test_order.py": "from oemdm_core.testing import check_order\n",
            "kit.py": "from oemdm_core.testing import check_order\n",
        },
    )
    assert public_import_problems(package) == [
        f"{package / 'kit.py'}:1 imports check_order from oemdm_core.testing"
    ]


# The names the built-in plugins needed from deeper modules, and where they were defined.
FORMERLY_DEEP = {
    "SPLITS": "oemdm_core.interfaces.data",
    "as_time_column": "oemdm_core.interfaces.position_schedule",
    "SlicedSchedule": "oemdm_core.interfaces.position_schedule",
    "discrete_times": "oemdm_core.nelbo.monte_carlo",
    "corrupt": "oemdm_core.nelbo.terms",
    "cross_entropy": "oemdm_core.nelbo.terms",
    "low_discrepancy_times": "oemdm_core.nelbo.terms",
    "NELBOTerms": "oemdm_core.nelbo.terms",
    "DrawOptions": "oemdm_core.interfaces.draws",
    "GRID_DESCRIPTION": "oemdm_core.interfaces.grids",
    "GridName": "oemdm_core.interfaces.grids",
    "StepCallback": "oemdm_core.interfaces.segment",
    "block_order_size": "oemdm_core.interfaces.requirements",
    "initial_state": "oemdm_core.interfaces.sampler",
}


@pytest.mark.parametrize(("name", "old"), sorted(FORMERLY_DEEP.items()))
def test_the_interfaces_serve_what_plugins_imported_from_deeper(name: str, old: str):
    assert getattr(interfaces, name) is getattr(importlib.import_module(old), name)
    assert name in interfaces.__all__


@pytest.mark.parametrize(
    "where", ["oemdm_core", "oemdm_core.interfaces", "oemdm_core.nelbo", "oemdm_core.nelbo.terms"]
)
def test_nelbo_terms_is_one_class_wherever_it_is_imported_from(where: str):
    from oemdm_core.interfaces.estimator import NELBOTerms

    assert importlib.import_module(where).NELBOTerms is NELBOTerms


def test_the_registry_pieces_a_composite_component_needs_come_from_oemdm_core():
    from oemdm_core.plugin.component import ComponentRegistry
    from oemdm_core.plugin.registry import registry, resolve_registry

    assert oemdm_core.ComponentRegistry is ComponentRegistry
    assert oemdm_core.resolve_registry is resolve_registry
    assert resolve_registry(None) is registry


def test_every_public_name_resolves():
    for module in (oemdm_core, interfaces):
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"


def test_every_top_level_package_ships_its_type_marker():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    tops = [p for p in setuptools["packages"] if "." not in p]
    assert "oemdm_core" in tops and len(tops) > 1
    for package in tops:
        directory = ROOT / setuptools["package-dir"][package]
        assert (directory / "py.typed").is_file(), f"{directory} has no py.typed"
        assert "py.typed" in setuptools["package-data"].get(package, []), package


def test_every_package_directory_is_listed_for_the_wheel():
    """The explicit package list of pyproject.toml holds every directory with an
    `__init__.py` (a missing one installs editable but not from a wheel)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for top, where in setuptools["package-dir"].items():
        base = ROOT / where
        for init in base.rglob("__init__.py"):
            parts = init.parent.relative_to(base).parts
            found.add(".".join((top, *parts)))
    assert found - listed == set(), sorted(found - listed)
    assert listed - found == set(), sorted(listed - found)
