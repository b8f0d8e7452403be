"""The component registry: names to classes, filled by pluggy plugins.

`registry` (module level) loads the `oemdm` entry-point group on first use. Tests and
scripts can make a fresh `Registry(entry_points=False)` and register plugin modules or
objects by hand with `register_plugin`.

Set `OEMDM_DISABLE_PLUGINS=name1,name2` (entry-point names, see `oemdm plugins`) to keep
installed plugins from loading.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, EntryPoints
from typing import Any, TypeVar

import pluggy

from oemdm_core.errors import (
    DuplicateComponentError,
    OeMDMWarning,
    UnknownComponentError,
    closest,
)
from oemdm_core.plugin import hookspecs
from oemdm_core.plugin.component import ComponentRegistry
from oemdm_core.plugin.kinds import KINDS
from oemdm_core.plugin.registration_checks import check_component_class, warn_hook_lookalikes

DISABLE_ENV = "OEMDM_DISABLE_PLUGINS"


@dataclass(frozen=True)
class Entry:
    """One registered component and where it came from."""

    kind: str
    name: str
    cls: type[Any]  # a Component subclass of the kind's interface
    plugin: str  # the plugin's registered name (entry-point name for installed plugins)
    distribution: (
        str | None
    )  # supplying distribution, e.g. "oemdm 0.1.0"; None if registered by hand

    @property
    def summary(self) -> str:
        doc = (self.cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


class Registry:
    """Maps (kind, name) to component classes supplied by plugins."""

    def __init__(self, entry_points: bool = True, disabled: list[str] | None = None) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._entry_points = entry_points
        self._loaded = False
        if disabled is None:
            disabled = [n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()]
        self.disabled = list(disabled)
        self._entries: dict[str, dict[str, Entry]] | None = None

    # -- plugins -----------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for name in self.disabled:
            self._pm.set_blocked(name)
        if self._entry_points:
            for ep in _entry_points():
                self._load_entry_point(ep)
            installed = {ep.name for ep in _entry_points()}
            for name in sorted(set(self.disabled) - installed):
                hint = closest(name, sorted(installed))
                warnings.warn(
                    f"{DISABLE_ENV} names {name!r}, which no installed plugin is called "
                    f"(installed: {', '.join(sorted(installed))})"
                    + (f"; did you mean '{hint}'?" if hint else ""),
                    OeMDMWarning,
                    stacklevel=3,
                )

    def _load_entry_point(self, ep: EntryPoint) -> None:
        """Load one installed plugin; one that fails to import is skipped with a warning
        naming it, its entry point and how to disable it (the other plugins still load)."""
        try:
            self._pm.load_setuptools_entrypoints(hookspecs.PROJECT, name=ep.name)
        except Exception as exc:
            dist = f" from {ep.dist.name} {ep.dist.version}" if ep.dist is not None else ""
            warnings.warn(
                f"plugin '{ep.name}' (entry point '{ep.name} = {ep.value}'{dist}) failed to "
                f"load and is skipped: {type(exc).__name__}: {' '.join(str(exc).split())}; "
                f"fix or uninstall it, or set {DISABLE_ENV}={ep.name} to silence this",
                OeMDMWarning,
                stacklevel=4,
            )

    def register_plugin(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin module or object (anything with `@hookimpl` functions).

        Returns the plugin's name. Raises `DuplicateComponentError` if it registers a name
        that another plugin already supplies for the same kind (nothing is registered then).
        """
        self._ensure_loaded()
        plugin_name = self._pm.register(plugin, name=name)
        if plugin_name is None:
            raise ValueError(f"plugin {name or plugin!r} is blocked (see {DISABLE_ENV})")
        self._entries = None
        try:
            self._collect()
        except Exception:
            self._pm.unregister(plugin)
            self._entries = None
            raise
        return plugin_name

    def unregister_plugin(self, name: str) -> None:
        """Remove a plugin registered under `name`."""
        self._ensure_loaded()
        plugin = self._pm.get_plugin(name)
        if plugin is None:
            raise UnknownComponentError(f"no plugin named {name!r}; loaded: {self.plugins()}")
        self._pm.unregister(plugin)
        self._entries = None

    def plugins(self) -> list[str]:
        """Names of the loaded plugins."""
        self._ensure_loaded()
        return sorted(n for n, p in self._pm.list_name_plugin() if p is not None)

    # -- lookup ------------------------------------------------------------------------
    def _collect(self) -> dict[str, dict[str, Entry]]:
        if self._entries is not None:
            return self._entries
        self._ensure_loaded()
        dists = {
            id(plugin): f"{dist.metadata['name']} {dist.version}"
            for plugin, dist in self._pm.list_plugin_distinfo()
        }
        entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        for name, plugin in self._pm.list_name_plugin():
            if plugin is not None:
                warn_hook_lookalikes(name, plugin)
        for kind, hook_name in hookspecs.HOOK_FOR_KIND.items():
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():

                def register(cls: type[Any], _impl: Any = impl, _kind: str = kind) -> None:
                    check_component_class(_kind, cls, _impl.plugin_name)
                    previous = entries[_kind].get(cls.name)
                    if previous is not None and previous.cls is not cls:
                        raise DuplicateComponentError(
                            f"{_kind} '{cls.name}' is registered twice: by plugin "
                            f"'{previous.plugin}' ({previous.cls.__module__}.{previous.cls.__qualname__}) "
                            f"and by plugin '{_impl.plugin_name}' "
                            f"({cls.__module__}.{cls.__qualname__}); disable one with {DISABLE_ENV}"
                        )
                    entries[_kind][cls.name] = Entry(
                        _kind, cls.name, cls, _impl.plugin_name, dists.get(id(_impl.plugin))
                    )

                impl.function(register=register)
        self._entries = entries
        return entries

    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            hint = closest(kind, list(KINDS))
            raise UnknownComponentError(
                f"unknown component kind {kind!r}; valid kinds: {', '.join(KINDS)}"
                + (f" (did you mean '{hint}'?)" if hint else "")
            )

    def available(self, kind: str) -> list[str]:
        """Sorted names of the registered components of `kind`."""
        self._check_kind(kind)
        return sorted(self._collect()[kind])

    def entry(self, kind: str, name: str) -> Entry:
        """The registration record of `name`; unknown names raise with the closest match."""
        self._check_kind(kind)
        entries = self._collect()[kind]
        if name not in entries:
            names = sorted(entries)
            hint = closest(name, names)
            provider = self._disabled_provider(kind, name)
            if provider is not None:
                raise UnknownComponentError(
                    f"{kind} {name!r} is provided by plugin '{provider}', which is disabled by "
                    f"{DISABLE_ENV}={os.environ.get(DISABLE_ENV, ','.join(self.disabled))}; "
                    f"remove '{provider}' from {DISABLE_ENV} to use it"
                )
            raise UnknownComponentError(
                f"unknown {kind} {name!r}; available {kind}s: {', '.join(names) or '(none)'}"
                + (f" (did you mean '{hint}'?)" if hint else "")
            )
        return entries[name]

    def _disabled_provider(self, kind: str, name: str) -> str | None:
        """The disabled plugin that would register `name` as a `kind` (None if none does).
        Only called for an error message: importing a disabled plugin is acceptable then."""
        hook = hookspecs.HOOK_FOR_KIND[kind]
        for ep in _entry_points():
            if ep.name not in self.disabled:
                continue
            found: list[str] = []
            try:
                function = getattr(ep.load(), hook, None)
                if function is not None:
                    function(register=lambda cls, _found=found: _found.append(cls.name))
            except Exception:  # a broken disabled plugin: no hint from it
                continue
            if name in found:
                return ep.name
        return None

    def get(self, kind: str, name: str) -> type[Any]:
        """The component class registered as `name`."""
        return self.entry(kind, name).cls

    def entries(self, kind: str | None = None) -> list[Entry]:
        """All registration records, optionally of one kind, sorted by kind and name."""
        kinds = [kind] if kind is not None else list(KINDS)
        for k in kinds:
            self._check_kind(k)
        collected = self._collect()
        return [collected[k][n] for k in kinds for n in sorted(collected[k])]

    def build(self, kind: str, name: str, **options: Any) -> Any:
        """Build component `name` of `kind` from validated keyword options. Components that
        hold other components (the block sampler's inner rule, topk's scorer) build them
        from this registry."""
        cls = self.get(kind, name)
        return cls.from_options(cls.validate_options(**options), registry=self)


registry = Registry()


RegistryT = TypeVar("RegistryT", bound=ComponentRegistry)


def resolve_registry(chosen: RegistryT | None) -> RegistryT | Registry:
    """`chosen`, or the global registry when None: the one place where a function that takes
    `registry: Registry | None` (or a component's `ComponentRegistry | None`) picks the
    default."""
    return registry if chosen is None else chosen


def _entry_points() -> EntryPoints:
    from importlib.metadata import entry_points

    return entry_points(group=hookspecs.PROJECT)
