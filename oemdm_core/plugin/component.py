"""The base of every pluggable component: a registry name and a validated options model."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from pydantic import ConfigDict, ValidationError
from typing_extensions import Self

from oemdm_core.errors import ConfigError, format_validation_error
from oemdm_core.plugin.strict import NoBoolNumbers


class ComponentRegistry(Protocol):
    """What a component that holds others needs of the registry building it (the
    `Registry` of `oemdm_core.plugin.registry` is one): classes and built components by
    kind and registry name."""

    def get(self, kind: str, name: str) -> type[Any]:
        """The class registered as `kind` `name`."""

    def build(self, kind: str, name: str, **options: Any) -> Any:
        """The component `kind` `name` built from validated `options`."""


class Options(NoBoolNumbers):
    """Base of every component's options model: unknown keys are errors (booleans are not
    numbers), every field must carry a default and a one-line description, and a validated
    model is frozen: assigning to a field raises `ValidationError`, so what a component reads
    from `self.options` is what it was built with (build a new component to change one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    """Mixin for registrable classes: a registry `name` and a validated options model.

    Subclasses set `name` (the registry name) and `Options` (a nested `Options` subclass,
    followed by `options: Options`, so that type checkers know `self.options.x`);
    `kind` is set by the interface class (e.g. `Order.kind == "order"`). Each option is
    defined once, in `Options` (default, constraints, description, cross-field checks):
    `__init__(**options)` validates the keyword options into `self.options` (frozen) and the
    component reads `self.options.x` where it needs it; what follows from an option is a
    property over `self.options` (see `Order`), not a copy that could drift from it. A
    component with nothing to build defines no `__init__`; one that builds layers or heads
    defines `__init__(self, **options)`, calls `super().__init__(**options)` and builds from
    `self.options`.
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""

    options: Options  # the validated options; a subclass narrows it to its own `Options`

    def __init__(self, **options: Any) -> None:
        """Validate `options` into `cls.Options` (a bad value raises `ConfigError` naming
        the field) and store them as `self.options`."""
        self.options = self.validate_options(**options)

    @classmethod
    def validate_options(cls, prefix: str | None = None, **raw: Any) -> Options:
        """Validate raw keyword options into `cls.Options`; raise `ConfigError` naming the field.

        `prefix` is the dotted config path of this component (default `kind[name]`).
        """
        try:
            return cls.Options(**raw)
        except ValidationError as exc:
            if prefix is None:
                prefix = f"{cls.kind}[{cls.name}]" if cls.kind else cls.name
            message = format_validation_error(exc, prefix, list(cls.Options.model_fields))
            raise ConfigError(message) from None

    @classmethod
    def from_options(cls, options: Options, registry: ComponentRegistry | None = None) -> Self:
        """Build from validated options. `registry` is the one building this component:
        a component that holds others (by registry name in its options) builds them from
        it. Default: `cls(**options)` (valid options pass validation again unchanged); the
        registry is not needed.

        The options are recorded on the built object afterwards, so that a component
        written before options were defined once (an `__init__` with named options that
        calls `super().__init__()` without them) still saves the options it was built with
        rather than the defaults."""
        component = cls(**dict(options))
        component.options = options
        return component

    def get_options(self) -> dict[str, Any]:
        """The options this component was built with (for configs and checkpoints)."""
        return self.options.model_dump(mode="json")

    # Last in the class body, so that `Options` above names the base class, not this one.
    Options = Options  # none, unless a subclass defines its own
