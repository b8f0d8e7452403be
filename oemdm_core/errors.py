"""Errors raised for bad user input, and the warnings oemdm gives.

Every error says what was wrong, the value received and what would be valid. They subclass
`ValueError` (or `LookupError`) so that callers can catch them with the builtin types.
A renamed name or flag keeps working until `REMOVED_IN`, with an `OeMDMDeprecationWarning`
that names its replacement (`warn_renamed`, `renamed_attributes`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from difflib import get_close_matches
from typing import Any

from pydantic import ValidationError


class OeMDMError(Exception):
    """Base class of every error raised by oemdm on purpose."""


class ConfigError(OeMDMError, ValueError):
    """An option or config value is invalid. The message names the dotted path."""


class UnknownComponentError(OeMDMError, LookupError):
    """A registry name that no loaded plugin provides."""


class DuplicateComponentError(OeMDMError, ValueError):
    """Two plugins register the same name for the same kind."""


class MissingPluginError(OeMDMError, LookupError):
    """A checkpoint names a component whose plugin is not installed."""


class CheckpointError(OeMDMError, ValueError):
    """A checkpoint file is missing, corrupt, truncated or disagrees with the others.
    The message names the file."""


class CheckpointWriteError(OeMDMError, OSError):
    """A checkpoint could not be written (disk full, read-only directory, …); the previous
    checkpoint is intact."""


class RunDirError(OeMDMError, ValueError):
    """A run directory holds another run, or another process is training in it."""


class OeMDMWarning(UserWarning):
    """Something accepted but probably not meant (the CLI prints it as one line)."""


class OeMDMDeprecationWarning(OeMDMWarning, DeprecationWarning):
    """An old name or flag that still works until `REMOVED_IN` (the CLI always shows it)."""


REMOVED_IN = "0.3"  # the version that removes the deprecated names


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that `old` is now `new` and goes in `REMOVED_IN`; `stacklevel` 3 points at the
    caller of the function that calls this one."""
    warnings.warn(
        f"{old} is deprecated and will be removed in {REMOVED_IN}; use {new}",
        OeMDMDeprecationWarning,
        stacklevel=stacklevel,
    )


def renamed_attributes(
    module: str, renamed: dict[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module `__getattr__` (PEP 562) that serves each old name of `renamed` (old -> new)
    as the object bound to the new name in `namespace` (the module's `globals()`), warning
    once per access; any other missing name is an `AttributeError` as usual."""

    def __getattr__(name: str) -> Any:
        new = renamed.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warn_renamed(f"{module}.{name}", f"{module}.{new}")
        return namespace[new]

    return __getattr__


def closest(name: str, choices: list[str]) -> str | None:
    """The closest of `choices` to `name`, or None if nothing is close."""
    match = get_close_matches(name, choices, n=1, cutoff=0.5)
    return match[0] if match else None


def _describe_allowed(err: Mapping[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    kind = err.get("type", "")
    if "expected" in ctx:
        return f"expected {ctx['expected']}"
    for key, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if key in ctx:
            return f"must be {word} {ctx[key]}"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    return str(err.get("msg", "invalid"))


def format_validation_error(
    exc: ValidationError, prefix: str = "", allowed: list[str] | None = None
) -> str:
    """One line per problem: `path: got <value>; <what is allowed>`.

    `prefix` is prepended to every dotted path (e.g. "order" for the order's options);
    `allowed` lists the valid keys, quoted for unknown-key errors.
    """
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        value = err.get("input")
        if err.get("type") == "extra_forbidden":
            hint = (
                f"unknown key; valid keys: {', '.join(sorted(allowed))}"
                if allowed
                else "unknown key"
            )
            match = closest(str(err["loc"][-1]), allowed or [])
            if match:
                hint += f" (did you mean '{match}'?)"
            lines.append(f"{loc}: {hint}")
        elif err.get("type") == "missing":
            lines.append(f"{loc}: required option is missing")
        else:
            lines.append(f"{loc}: got {value!r}; {_describe_allowed(err)}")
    return "\n".join(lines)
