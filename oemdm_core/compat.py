"""Import paths from before the core was split into layers (the flat `oemdm_core/*.py`
layout), kept working.

`import oemdm_core.loader` (and every other old path in `MOVED`) returns the module at its
new place, the same module object, so names, monkeypatches and `isinstance` checks agree.
New code imports from the new places.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

# old dotted path -> new dotted path
MOVED: dict[str, str] = {
    "oemdm_core.checkpoint": "oemdm_core.files",
    "oemdm_core.strict": "oemdm_core.plugin.strict",
    "oemdm_core.component": "oemdm_core.plugin.component",
    "oemdm_core.hookspecs": "oemdm_core.plugin.hookspecs",
    "oemdm_core.registry": "oemdm_core.plugin.registry",
    "oemdm_core.backbone": "oemdm_core.interfaces.backbone",
    "oemdm_core.schedule": "oemdm_core.interfaces.schedule",
    "oemdm_core.position_schedule": "oemdm_core.interfaces.position_schedule",
    "oemdm_core.order": "oemdm_core.interfaces.order",
    "oemdm_core.estimator": "oemdm_core.nelbo.monte_carlo",
    "oemdm_core.sampler": "oemdm_core.interfaces.sampler",
    "oemdm_core.sampling": "oemdm_core.interfaces.draws",
    "oemdm_core.data": "oemdm_core.interfaces.data",
    "oemdm_core.exact": "oemdm_core.nelbo.exact",
    "oemdm_core.time_proposal": "oemdm_core.nelbo.time_proposal",
    "oemdm_core.config": "oemdm_core.model.config",
    "oemdm_core.experiment": "oemdm_core.runtime.experiment",
    "oemdm_core.loader": "oemdm_core.runtime.data_cache",
    "oemdm_core.training_state": "oemdm_core.runtime.checkpoint.store",
    "oemdm_core.trainer": "oemdm_core.runtime.trainer",
    "oemdm_core.run_dir": "oemdm_core.runtime.run_dir",
    "oemdm_core.run_log": "oemdm_core.runtime.run_log",
    "oemdm_core.interrupt": "oemdm_core.runtime.interrupt",
    "oemdm_core.device": "oemdm_core.runtime.device",
    "oemdm_core.visualize": "oemdm_core.runtime.visualize",
    "oemdm_core.evaluation": "oemdm_core.runtime.evaluation.likelihood",
    "oemdm_core.exact_order": "oemdm_core.runtime.evaluation.exact_order",
    "oemdm_core.zero_shot": "oemdm_core.runtime.evaluation.zero_shot",
    "oemdm_core.judge": "oemdm_core.runtime.evaluation.judge",
    "oemdm_core.sample_metrics": "oemdm_core.runtime.evaluation.sample_metrics",
    "oemdm_core.commands": "oemdm_core.cli",
}


def new_path(old: str) -> str | None:
    """The new dotted path of `old` (`oemdm_core.commands.eval` -> `oemdm_core.cli.eval`)."""
    if old in MOVED:
        return MOVED[old]
    package, _, leaf = old.rpartition(".")
    if package == "oemdm_core.commands":
        return f"oemdm_core.cli.{leaf}"
    return None


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old path by importing the new one and binding it under the old name."""

    def find_spec(self, fullname, path=None, target=None):
        if new_path(fullname) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        return None  # a placeholder; exec_module swaps in the real module

    def exec_module(self, module: ModuleType) -> None:
        # The import system returns whatever sys.modules holds under the name afterwards.
        sys.modules[module.__name__] = importlib.import_module(new_path(module.__name__))


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        # First, so that the path finder does not load a second copy of a moved module.
        sys.meta_path.insert(0, MovedModuleFinder())
