"""All plugin hooks, one per component kind (`oemdm_core.plugin.kinds` is the table of kinds;
`HOOK_FOR_KIND` maps each kind to its hook).

A plugin is any module or object with `@hookimpl`-decorated functions named like the specs
below. Each hook receives `register`, a callable taking a component class (which carries its
own `name` and `Options`), and calls it once per component::

    from oemdm_core import hookimpl

    @hookimpl
    def register_orders(register: Register) -> None:
        register(RightToLeft)

Built-in plugins are registered through the `oemdm` entry-point group, exactly like
third-party ones.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from oemdm_core.plugin.kinds import HOOK_FOR_KIND

__all__ = ["HOOK_FOR_KIND", "PROJECT", "Register", "hookimpl", "hookspec"]

PROJECT = "oemdm"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[type], None]


@hookspec
def register_schedules(register: Register) -> None:
    """Register base noise schedules α_b(s) (subclasses of `oemdm_core.BaseSchedule`)."""


@hookspec
def register_orders(register: Register) -> None:
    """Register generation orders (subclasses of `oemdm_core.Order`)."""


@hookspec
def register_backbones(register: Register) -> None:
    """Register denoiser networks (subclasses of `oemdm_core.Backbone`)."""


@hookspec
def register_samplers(register: Register) -> None:
    """Register samplers (subclasses of `oemdm_core.Sampler`)."""


@hookspec
def register_scorers(register: Register) -> None:
    """Register inference-time order rules (subclasses of `oemdm_core.Scorer`)."""


@hookspec
def register_estimators(register: Register) -> None:
    """Register NELBO estimators (subclasses of `oemdm_core.Estimator`)."""


@hookspec
def register_tokenizers(register: Register) -> None:
    """Register tokenizers (subclasses of `oemdm_core.Tokenizer`)."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register text datasets (subclasses of `oemdm_core.Dataset`)."""
