"""Checks the registry runs on what plugins register: each component class against the
component contract, and a plugin's functions for hooks that pluggy would silently ignore."""

from __future__ import annotations

import inspect
import warnings
from difflib import get_close_matches
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from oemdm_core.errors import OeMDMWarning, closest
from oemdm_core.plugin import hookspecs
from oemdm_core.plugin.component import Component


def check_component_class(kind: str, cls: Any, plugin: str) -> None:
    where = f"plugin '{plugin}' registered {cls!r} as a {kind}"
    if not isinstance(cls, type) or not issubclass(cls, Component):
        raise TypeError(f"{where}, but it is not a Component subclass")
    if cls.kind != kind:
        raise TypeError(f"{where}, but its interface kind is {cls.kind!r}")
    if not cls.name:
        raise TypeError(f"{where}, but it has no `name`")
    options = cls.Options
    if not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise TypeError(f"{where}, but its `Options` is not a pydantic model")
    if options.model_config.get("extra") != "forbid":
        raise TypeError(f"{where}, but its `Options` does not forbid unknown keys")
    for field_name, field in options.model_fields.items():
        if field.default is PydanticUndefined and field.default_factory is None:
            raise TypeError(f"{where}, but option '{field_name}' has no default")
        if not field.description:
            raise TypeError(f"{where}, but option '{field_name}' has no description")
    named = options_as_named_parameters(cls)
    if named:
        warnings.warn(
            f"{where}: its __init__ takes the option(s) {', '.join(named)} as named parameters; "
            "options are defined once, in Options: take **options, call "
            "super().__init__(**options) and read self.options (docs/plugins.md). Built "
            "directly, such a component saves its default options in checkpoints",
            OeMDMWarning,
            stacklevel=5,
        )


def options_as_named_parameters(cls: type[Component]) -> list[str]:
    """The options that `cls.__init__` takes as named parameters: the style of components
    written before options were defined once, whose `get_options()` reports the defaults
    when they are built by calling the class."""
    parameters = inspect.signature(cls.__init__).parameters
    return [name for name in parameters if name in cls.Options.model_fields]


def warn_hook_lookalikes(plugin_name: str, plugin: Any) -> None:
    """Warn about `register_*` functions of a plugin that pluggy silently ignores: a
    `@hookimpl` whose name matches no hookspec (a typo), or a hookspec name without
    `@hookimpl`."""
    specs = sorted(hookspecs.HOOK_FOR_KIND.values())
    where = f"plugin '{plugin_name}' ({getattr(plugin, '__name__', type(plugin).__name__)})"
    for attr in dir(plugin):
        if not attr.startswith("register"):
            continue
        function = getattr(plugin, attr, None)
        if not callable(function):
            continue
        marked = getattr(function, f"{hookspecs.PROJECT}_impl", None) is not None
        if marked and attr not in specs:
            hint = closest(attr, specs)
            warnings.warn(
                f"{where}: @hookimpl function {attr!r} matches no hook, so it is ignored"
                + (f"; did you mean '{hint}'?" if hint else f"; hooks: {', '.join(specs)}"),
                OeMDMWarning,
                stacklevel=4,
            )
        elif not marked and attr in specs:
            warnings.warn(
                f"{where}: function {attr!r} is not decorated with @hookimpl, so it is ignored",
                OeMDMWarning,
                stacklevel=4,
            )
        elif not marked and (near := get_close_matches(attr, specs, n=1, cutoff=0.85)):
            warnings.warn(
                f"{where}: function {attr!r} looks like a hook but matches none (did you mean "
                f"'{near[0]}' with @hookimpl?); it is ignored",
                OeMDMWarning,
                stacklevel=4,
            )
