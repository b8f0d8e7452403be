"""The base of every pluggable component: a registry name and a validated options model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ConfigDict, ValidationError

from oemdm_core.errors import ConfigError, format_validation_error
from oemdm_core.plugin.strict import NoBoolNumbers

if TYPE_CHECKING:
    from oemdm_core.plugin.registry import Registry

KINDS: tuple[str, ...] = (
    "schedule",
    "order",
    "backbone",
    "sampler",
    "scorer",
    "estimator",
    "tokenizer",
    "dataset",
)


class Options(NoBoolNumbers):
    """Base of every component's options model: unknown keys are errors, values are checked
    on assignment (booleans are not numbers), and every field must carry a default and a
    one-line description."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class Component:
    """Mixin for registrable classes.

    Subclasses set `name` (the registry name) and `Options` (a nested `Options` subclass);
    `kind` is set by the interface class (e.g. `Order.kind == "order"`). A component is
    built from validated options with `from_options`, which by default calls
    `cls(**options.model_dump())`, so constructors keep plain keyword arguments.
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""

    class Options(Options):
        pass

    options: Options

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
    def from_options(cls, options: Options, registry: Registry | None = None) -> Component:
        """Build from validated options. `registry` is the one building this component:
        a component that holds others (by registry name in its options) builds them from
        it. Default: `cls(**options)`; the registry is not needed."""
        obj = cls(**options.model_dump())
        obj.options = options
        return obj

    def get_options(self) -> dict[str, Any]:
        """The options this component was built with (for configs and checkpoints)."""
        options = getattr(self, "options", None)
        if options is None:  # built by calling the constructor directly
            fields = type(self).Options.model_fields
            options = type(self).Options(
                **{f: getattr(self, f) for f in fields if hasattr(self, f)}
            )
        return options.model_dump(mode="json")
