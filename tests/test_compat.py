"""Import paths from before the layered core keep working and give the same module objects."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from oemdm_core.compat import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_new_module(old):
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_old_command_modules_resolve_under_the_cli():
    from oemdm_core.commands import eval as old

    from oemdm_core.cli import eval as new

    assert old is new and old.load is new.load


def test_the_registry_name_stays_the_instance_after_importing_its_old_path():
    code = (
        "import oemdm_core, oemdm_core.registry as m; from oemdm_core.registry import registry; "
        "from oemdm_core.plugin.registry import Registry; "
        "print(isinstance(oemdm_core.registry, Registry), registry is oemdm_core.registry)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_an_old_path_loads_no_second_copy():
    code = (
        "import sys, oemdm_core.loader, oemdm_core.runtime.data_cache as new; "
        "print(len({id(m) for m in list(sys.modules.values()) "
        "if getattr(m, '__file__', None) == new.__file__}), oemdm_core.loader is new)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "True"]  # one module, under its old and new names


# Every public name the four modules that became packages defined before the split
# (read from their source at commit 6539d97 with an AST scan: top-level defs, classes and
# assignments not starting with "_").
OLD_NAMES = {
    "oemdm_core.cli": ["COMMANDS", "build_parser", "main", "one_line"],
    "oemdm_core.model": ["CONFIG_FILE", "FORMAT", "OeMDM", "WEIGHTS_FILE", "load_weights"],
    "oemdm_core.nelbo": [
        "NELBOTerms",
        "bernoulli_kl",
        "continuous_integrand",
        "corrupt",
        "cross_entropy",
        "discrete_step_terms",
        "leave_one_out_baseline",
        "log_forward_probability",
        "low_discrepancy_times",
        "score_function_surrogate",
        "velocity_bregman",
    ],
    "oemdm_core.testing": [
        "ConformanceError",
        "EDGE_EPS",
        "TOL",
        "batch_sizes",
        "check_order",
        "check_position_schedule",
        "check_schedule",
        "edge_times",
        "lengths",
        "time_pairs",
        "times",
        "token_batches",
        "vocab_sizes",
    ],
}


@pytest.mark.parametrize("module", sorted(OLD_NAMES))
def test_a_module_that_became_a_package_keeps_its_names(module):
    package = importlib.import_module(module)
    missing = [name for name in OLD_NAMES[module] if not hasattr(package, name)]
    assert not missing, f"{module} lost {missing}"


def test_the_cli_runs_as_a_module():
    out = subprocess.run(
        [sys.executable, "-m", "oemdm_core.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "usage: oemdm" in out.stdout and not out.stderr
