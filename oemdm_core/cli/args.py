"""Arguments shared by the commands: types that reject a bad value in one line naming it,
the sampler a command builds from `--sampler` and `key=value` flags, and `--json` files."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from oemdm_core.errors import ConfigError
from oemdm_core.plugin.registry import Registry, resolve_registry


def positive_int(text: str) -> int:
    """An integer >= 1 (`--num-times 0` is an error, not "the default")."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"got {value}; must be an integer >= 1")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"got {value}; must be an integer >= 0")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}; expected an integer") from None


def add_sampler_arguments(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """`--sampler NAME` and the repeatable `--sampler-set KEY=VALUE` (into
    `args.sampler_options`), which `sampler_from_flags` reads; `scope` starts their help,
    e.g. "--samples: "."""

    def helped(text: str) -> str:
        return scope + text if scope else text[0].upper() + text[1:]

    parser.add_argument("--sampler", help=helped("sampler registry name (default: the config's)."))
    parser.add_argument(
        "--sampler-set",
        dest="sampler_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=helped("sampler option, e.g. --sampler-set steps=256 (repeatable)."),
    )


def sampler_from_flags(
    name: str | None,
    spec,
    assignments: list[str],
    flag: str,
    registry: Registry | None = None,
):
    """Sampler `name` (default: the config's `spec`) with the config's options if it is the
    same sampler, then the `key=value` `assignments` given with `flag`; validated (one line)."""
    import yaml

    name = name or spec.name
    options = dict(spec.options) if name == spec.name else {}
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"{flag} {item!r}: expected key=value, e.g. steps=256")
        key, value = item.split("=", 1)
        options[key] = yaml.safe_load(value)
    registry = resolve_registry(registry)
    cls = registry.get("sampler", name)
    options = cls.validate_options(prefix=f"sampler[{name}]", **options)
    return cls.from_options(options, registry=registry)


def write_json_report(path: str, data: Any) -> None:
    """Write `--json` output as valid JSON: a value that is not a finite number (e.g. the
    standard error of a single sequence) is written as null, never as NaN or Infinity."""

    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    Path(path).write_text(json.dumps(finite(data), indent=2, allow_nan=False) + "\n")
