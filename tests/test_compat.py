"""The compat layer is gone: the import paths of the flat layout before the core was split
into layers (`oemdm_core.loader`, `oemdm_core.commands.eval`, …) fail like any missing
module, and the public names (DESIGN section 5) are reached from `oemdm_core` without one."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

# The old paths `oemdm_core/compat.py` resolved until 0.1.0 (deleted with it: nothing used them).
OLD_PATHS = [
    "oemdm_core.compat",
    "oemdm_core.checkpoint",
    "oemdm_core.strict",
    "oemdm_core.component",
    "oemdm_core.hookspecs",
    "oemdm_core.backbone",
    "oemdm_core.schedule",
    "oemdm_core.position_schedule",
    "oemdm_core.order",
    "oemdm_core.estimator",
    "oemdm_core.sampler",
    "oemdm_core.sampling",
    "oemdm_core.data",
    "oemdm_core.exact",
    "oemdm_core.time_proposal",
    "oemdm_core.config",
    "oemdm_core.experiment",
    "oemdm_core.loader",
    "oemdm_core.training_state",
    "oemdm_core.trainer",
    "oemdm_core.run_dir",
    "oemdm_core.run_log",
    "oemdm_core.interrupt",
    "oemdm_core.device",
    "oemdm_core.visualize",
    "oemdm_core.evaluation",
    "oemdm_core.exact_order",
    "oemdm_core.zero_shot",
    "oemdm_core.judge",
    "oemdm_core.sample_metrics",
    "oemdm_core.commands",
    "oemdm_core.commands.eval",
]


@pytest.mark.parametrize("old", OLD_PATHS)
def test_an_old_path_is_gone(old):
    with pytest.raises(ModuleNotFoundError, match=old.rsplit(".", 1)[0]):
        importlib.import_module(old)


def test_the_registry_module_has_no_old_path_and_the_name_is_the_instance():
    code = (
        "import importlib, oemdm_core; from oemdm_core import registry; "
        "from oemdm_core.plugin.registry import Registry\n"
        "try:\n    importlib.import_module('oemdm_core.registry')\n"
        "except ModuleNotFoundError:\n    print('gone')\n"
        "print(isinstance(registry, Registry), oemdm_core.registry is registry)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["gone", "True", "True"]


# The public names of DESIGN section 5, reached where it says, without a warning.
def test_the_public_names_import_without_a_warning():
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "from oemdm_core import registry, OeMDM\n"
        "from oemdm_core import KINDS, Component, Options, hookimpl, NELBOTerms, Sampler\n"
        "from oemdm_core.plugin.hookspecs import HOOK_FOR_KIND\n"
        "print(OeMDM.__name__, len(KINDS), len(HOOK_FOR_KIND), registry.available('order')[:1])"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True
    )
    assert out.returncode == 0 and not out.stderr, out.stderr
    assert out.stdout.split()[:3] == ["OeMDM", "8", "8"]


def test_no_core_module_warns_on_import():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for name in ("oemdm_core", "oemdm_core.model", "oemdm_core.nelbo", "oemdm_core.cli"):
            importlib.import_module(name)


# Packages that replaced modules keep those modules' names: their real public surface.
PACKAGE_NAMES = {
    "oemdm_core.cli": ["COMMANDS", "build_parser", "main", "one_line"],
    "oemdm_core.model": ["ComponentSpec", "ModelConfig", "OeMDM"],
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


@pytest.mark.parametrize("module", sorted(PACKAGE_NAMES))
def test_a_package_keeps_its_names(module):
    package = importlib.import_module(module)
    missing = [name for name in PACKAGE_NAMES[module] if not hasattr(package, name)]
    assert not missing, f"{module} lost {missing}"


def test_the_cli_runs_as_a_module():
    out = subprocess.run(
        [sys.executable, "-m", "oemdm_core.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "usage: oemdm" in out.stdout and not out.stderr
