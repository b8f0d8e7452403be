"""Pretrained model directories: `config.json` (the components by registry name, their
options and the plugins and distributions that supplied them) next to `model.safetensors`.

`OeMDM.save_pretrained` and `OeMDM.from_pretrained` are `save` and `load` here. A directory
says exactly what built it: loading names the missing plugin (and the distribution that had
supplied it) before building anything, and weights that disagree with the config name the
file and the first disagreeing tensor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from oemdm_core.errors import (
    CheckpointError,
    ConfigError,
    MissingPluginError,
    UnknownComponentError,
)
from oemdm_core.files import atomic_directory, atomic_file, fsync_dir, write_json
from oemdm_core.plugin.component import Component
from oemdm_core.plugin.registry import DISABLE_ENV, Registry, resolve_registry

ModuleT = TypeVar("ModuleT", bound=nn.Module)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "oemdm-model/1"


def save(
    model: nn.Module,
    model_config: dict[str, Any],
    components: Mapping[str, Component],
    path: str | os.PathLike,
    registry: Registry | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `config.json` (`model_config`, and the plugins and distributions that supplied
    `components`, by kind) and `model.safetensors` (the weights of `model`) into directory
    `path`.

    `path` may be new or an empty directory (`"."` included). A directory that already holds
    a saved model is replaced only with `overwrite=True`, and then only its two files; any
    other non-empty directory, and a file, are refused (`FileExistsError`), so that no call
    deletes files it did not write. A new directory appears atomically; files written into
    an existing one are each replaced atomically.
    """
    registry = resolve_registry(registry)
    provenance = {}
    for kind, component in components.items():
        try:
            entry = registry.entry(kind, component.name)
            provenance[kind] = {"plugin": entry.plugin, "distribution": entry.distribution}
        except UnknownComponentError:
            provenance[kind] = {"plugin": None, "distribution": None}
    path = Path(path)
    config = {"format": FORMAT, "model": model_config, "provenance": provenance}
    if not path.exists() and not path.is_symlink():
        with atomic_directory(path) as tmp:
            write_json(tmp / CONFIG_FILE, config)
            save_model(model, str(tmp / WEIGHTS_FILE))
        return path
    check_save_target(path, overwrite)
    with atomic_file(path / WEIGHTS_FILE) as weights_tmp:
        save_model(model, str(weights_tmp))
    write_json(path / CONFIG_FILE, config)
    fsync_dir(path)
    return path


def check_save_target(path: Path, overwrite: bool) -> None:
    """Refuse to save into `path` unless it is an empty directory, or a saved model and
    `overwrite` is set."""
    if not path.is_dir():
        raise FileExistsError(
            f"save_pretrained({str(path)!r}): {path} is a file, not a directory; choose a "
            "new or empty directory"
        )
    present = sorted(p.name for p in path.iterdir())
    if not present:
        return
    if set(present) <= {CONFIG_FILE, WEIGHTS_FILE} and _is_model_config(path / CONFIG_FILE):
        if overwrite:
            return
        raise FileExistsError(
            f"save_pretrained({str(path)!r}): {path} already holds a saved model; pass "
            "overwrite=True to replace its config.json and model.safetensors"
        )
    shown = ", ".join(present[:5]) + (", …" if len(present) > 5 else "")
    raise FileExistsError(
        f"save_pretrained({str(path)!r}): {path} is not empty and is not a saved model "
        f"(it holds {shown}); nothing was written. Choose a new or empty directory"
    )


def load(
    from_config: Callable[..., ModuleT],
    path: str | os.PathLike,
    registry: Registry | None = None,
    map_location: str = "cpu",
) -> ModuleT:
    """Build a model by `from_config(model_config, registry=registry)` from the `config.json`
    of a directory written by `save`, then load its weights onto `map_location`."""
    registry = resolve_registry(registry)
    path = Path(path)
    config_file = path / CONFIG_FILE
    data = read_config(config_file)
    for kind, info in data.get("provenance", {}).items():
        name = data["model"][kind]["name"]
        if name not in registry.available(kind):
            dist, plugin = (info or {}).get("distribution"), (info or {}).get("plugin")
            if plugin in registry.disabled:
                raise MissingPluginError(
                    f"checkpoint {path} needs {kind} '{name}' of plugin '{plugin}', which is "
                    f"disabled by {DISABLE_ENV}; remove '{plugin}' from {DISABLE_ENV} to load it"
                )
            hint = (
                f"install {dist.split()[0]} (it supplied it: {dist})"
                if dist
                else "install the plugin that provides it"
            )
            raise MissingPluginError(
                f"checkpoint {path} needs {kind} '{name}', which is not registered; {hint}"
            )
    try:
        model = from_config(data["model"], registry=registry)
    except ConfigError as exc:
        raise ConfigError(f"{config_file}: {exc}") from None
    load_weights(model, path / WEIGHTS_FILE, config_file, map_location)
    return model


def _is_model_config(config_file: Path) -> bool:
    try:
        return read_json_object(config_file, "").get("format") == FORMAT
    except (FileNotFoundError, CheckpointError):
        return False


def read_json_object(path: Path, missing: str) -> dict[str, Any]:
    """The JSON object in the file `path` of a checkpoint. No such file: `FileNotFoundError`
    with the message `missing`; a corrupt, truncated or non-object file: `CheckpointError`
    naming it."""
    if not path.is_file():
        raise FileNotFoundError(missing)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path}: not valid JSON, the file is corrupt or truncated ({exc})"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_config(config_file: Path) -> dict[str, Any]:
    """The contents of a `config.json`, checked to be one of this format."""
    missing = (
        f"no {CONFIG_FILE} in {config_file.parent}: not a checkpoint written by save_pretrained"
    )
    data = read_json_object(config_file, missing)
    if not isinstance(data.get("model"), dict):
        raise CheckpointError(f"{config_file}: not a model config (no 'model' object)")
    if data.get("format") != FORMAT:
        raise ValueError(
            f"{config_file}: unknown format {data.get('format')!r}, expected {FORMAT!r}"
        )
    return data


def load_weights(model: nn.Module, weights: Path, config_file: Path, device: str) -> None:
    """Load `model.safetensors` into `model` built from `config_file`; a missing, corrupt or
    truncated file, or weights whose shapes disagree with the config, raise
    `CheckpointError` naming the file and the first disagreeing tensor."""
    if not weights.is_file():
        raise CheckpointError(f"missing {weights.name} next to {config_file}")
    try:
        with safe_open(str(weights), framework="pt") as f:
            shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{weights}: cannot be read, the file is corrupt or truncated ({exc})"
        ) from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    config = json.loads(config_file.read_text())["model"]
    for key, shape in shapes.items():
        if key in expected and expected[key] != shape:
            raise CheckpointError(
                f"{weights} does not match {config_file}: {key} has shape {list(shape)} in the "
                f"weights but {list(expected[key])} in a model built from the config "
                f"(vocab_size={config.get('vocab_size')}, length={config.get('length')}); was "
                "config.json edited, or copied from another checkpoint?"
            )
    unknown = sorted(set(shapes) - set(expected))
    if unknown:
        raise CheckpointError(
            f"{weights} does not match {config_file}: the weights hold tensors the configured "
            f"model has not ({', '.join(unknown[:3])}{', …' if len(unknown) > 3 else ''})"
        )
    try:
        load_model(model, str(weights), device=device)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"{weights}: cannot be read, the file is corrupt or truncated ({exc})"
        ) from None
    except RuntimeError as exc:  # e.g. tensors missing from the file
        message = " ".join(str(exc).split())
        raise CheckpointError(f"{weights} does not match {config_file}: {message[:300]}") from None
