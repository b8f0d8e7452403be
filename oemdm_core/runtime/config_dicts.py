"""Experiment configs as plain nested dicts, before and after validation: YAML or JSON files
read with duplicate keys refused, dotted `--set key=value` overrides, a file merged onto the
defaults, and resolved configs flattened to dotted keys and compared (what a resumed run may
change). No pydantic here: `oemdm_core.runtime.experiment` validates the result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from oemdm_core.errors import ConfigError


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(
                    f"{self.name}: line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                    f"(first given on line {seen[key] + 1}); keep one of them"
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _unique_json(path: Path, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"{path}: duplicate key {key!r}; keep one of them")
        out[key] = value
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON file as a dict (empty file → {})."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text, object_pairs_hook=lambda pairs: _unique_json(path, pairs))
        else:
            loader = _UniqueKeyLoader(text)
            loader.name = str(path)
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `dotted.key=value` (value parsed as YAML) to the nested dict `data`."""
    if "=" not in assignment:
        raise ConfigError(
            f"--set {assignment!r}: expected dotted.key=value, e.g. training.steps=100"
        )
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {assignment!r}: empty part in the dotted key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str) and i == 1 and parts[0] in ("model", "data", "sampling"):
            child = {"name": child}  # a component given by name gains options
        if child is None:
            child = {}
        if not isinstance(child, dict):
            raise ConfigError(
                f"--set {key}: {'.'.join(parts[: i + 1])} is a value ({child!r}), not a section"
            )
        node[part] = child
        node = child
    node[parts[-1]] = value


def merge_config(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge; a component given in `update` replaces the default one entirely."""
    out = dict(base)
    for key, value in update.items():
        if (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and "name" not in value
            and "name" not in out[key]
        ):
            out[key] = merge_config(out[key], value)
        elif (
            isinstance(value, dict)
            and isinstance(out.get(key), dict)
            and "name" in out[key]
            and "name" not in value
        ):
            out[key] = {**out[key], **value}  # options only: keep the default component
        else:
            out[key] = value
    return out


# Keys that may change when a run is resumed (everything else must match).
RESUMABLE_KEYS = (
    "training.stop_after",
    "training.log_every",
    "training.progress",
    "training.run_dir",
    "training.device",
    "training.keep_checkpoints",
    "training.checkpoint_every",
)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} → {"a.b": 1}."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_differences(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs (resumable keys ignored)."""
    a, b = flatten(saved), flatten(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE_KEYS)
