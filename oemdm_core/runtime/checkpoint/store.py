"""The checkpoint store of a run directory: the names on disk, one checkpoint written
atomically, versions behind the `checkpoint` pointer (newest first, the newest `keep` kept),
and the files read back with checks (a missing or corrupt file raises naming it).

The layout and the atomicity argument are in `oemdm_core.runtime.checkpoint`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from oemdm_core.errors import CheckpointError, CheckpointWriteError
from oemdm_core.files import atomic_directory, fsync_dir, replace_symlink, write_json
from oemdm_core.model.oemdm import OeMDM
from oemdm_core.model.pretrained import CONFIG_FILE, read_json_object
from oemdm_core.plugin.registry import Registry, resolve_registry

MODEL_DIR = "model"
TOKENIZER_FILE = "tokenizer.json"
CHECKSUMS_FILE = "checksums.json"  # sha256 of tokenizer.json
EXPERIMENT_FILE = "experiment.json"
STATE_FILE = "training_state.pt"
# A run directory holds its checkpoints as versions `CHECKPOINT_VERSIONS_DIR/step-<N>[.k]`;
# `LATEST_CHECKPOINT` is the symlink to the newest (a plain directory in runs written before
# versions), the path that `--resume`, `oemdm eval` and `oemdm sample` read.
LATEST_CHECKPOINT = "checkpoint"
CHECKPOINT_VERSIONS_DIR = "checkpoints"
LEGACY_VERSION = "legacy"  # a pre-versioning `checkpoint/` directory moved aside
_VERSION = re.compile(r"^step-(\d+)(?:\.(\d+))?$")


def save_checkpoint(
    path: str | os.PathLike,
    eval_model: OeMDM,
    tokenizer_record: dict[str, Any],
    experiment: dict[str, Any],
    training_state: dict[str, Any],
    registry: Registry | None = None,
    shards: Callable[[Path], None] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (a crash leaves the previous one intact);
    `shards(tmp)` first writes the processes' shards into it (`checkpoint.sharded`)."""
    with atomic_directory(path) as tmp:
        if shards is not None:
            shards(tmp)
        eval_model.save_pretrained(tmp / MODEL_DIR, registry=registry)
        write_json(tmp / TOKENIZER_FILE, tokenizer_record)
        write_json(tmp / CHECKSUMS_FILE, {TOKENIZER_FILE: file_sha256(tmp / TOKENIZER_FILE)})
        write_json(tmp / EXPERIMENT_FILE, experiment)
        torch.save(training_state, tmp / STATE_FILE)
    return Path(path)


def file_sha256(path: Path) -> str:
    """sha256 of a (small) file's bytes, hex (hashlib.file_digest needs Python 3.11)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_tokenizer_record(checkpoint: Path) -> dict[str, Any]:
    """The `tokenizer.json` record of a checkpoint, checked against the sha256 in its
    `checksums.json` (an edited or corrupt file raises `CheckpointError` naming it).
    Checkpoints written before checksums existed have no `checksums.json` and are accepted."""
    path = Path(checkpoint) / TOKENIZER_FILE
    record = load_json(path)
    sums = Path(checkpoint) / CHECKSUMS_FILE
    if sums.is_file() or sums.is_symlink():
        expected = load_json(sums).get(TOKENIZER_FILE)
        if expected != file_sha256(path):
            raise CheckpointError(
                f"{path}: its sha256 does not match the one recorded in {sums} when the "
                "checkpoint was written; the file was edited or is corrupt (restore it, or "
                "use another checkpoint)"
            )
    return record


def version_key(path: Path) -> tuple[int, int] | None:
    """(step, serial) of a checkpoint version directory name; None for other names."""
    if path.name == LEGACY_VERSION:
        return (-1, 0)
    match = _VERSION.match(path.name)
    return (int(match[1]), int(match[2] or 0)) if match else None


def checkpoint_versions(run_dir: str | os.PathLike) -> list[Path]:
    """The complete checkpoints of a run directory, newest first.

    Only fully written versions carry a `step-*` name (temporaries are hidden), so every
    entry is complete as far as the writer knows; `load_checkpoint` falls back to the next
    one if a file turns out unreadable. A pre-versioning `checkpoint/` directory is listed
    last.
    """
    run_dir = Path(run_dir)
    versions: list[tuple[tuple[int, int], Path]] = []
    root = run_dir / CHECKPOINT_VERSIONS_DIR
    if root.is_dir():
        for child in root.iterdir():
            key = version_key(child)
            if key is not None and child.is_dir():
                versions.append((key, child))
    found = [p for _, p in sorted(versions, reverse=True)]
    legacy = run_dir / LATEST_CHECKPOINT
    if legacy.is_dir() and not legacy.is_symlink():
        found.append(legacy)
    return found


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run directory (None if there is none)."""
    versions = checkpoint_versions(run_dir)
    return versions[0] if versions else None


def save_versioned_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    eval_model: OeMDM,
    tokenizer_record: dict[str, Any],
    experiment: dict[str, Any],
    training_state: dict[str, Any],
    registry: Registry | None = None,
    keep: int = 2,
    shards: Callable[[Path], None] | None = None,
) -> Path:
    """Write checkpoint `checkpoints/step-<step>` durably, point `checkpoint` at it, and
    delete all but the newest `keep` versions. Returns the new version's directory.

    A failure (disk full, read-only directory) removes the partial version and leaves the
    previous checkpoint and the pointer untouched.
    """
    run_dir = Path(run_dir)
    root = run_dir / CHECKPOINT_VERSIONS_DIR
    root.mkdir(exist_ok=True)
    pointer = run_dir / LATEST_CHECKPOINT
    if pointer.is_dir() and not pointer.is_symlink():  # a run written before versioning
        os.replace(pointer, root / LEGACY_VERSION)
        fsync_dir(root)
        fsync_dir(run_dir)
    # a later write at the same step (the final checkpoint after a periodic one) takes a
    # higher serial than any version of that step, so it sorts as the newest
    keys = [version_key(v) for v in checkpoint_versions(run_dir)]
    serials = [key[1] for key in keys if key is not None and key[0] == step]
    name = f"step-{step:08d}" + (f".{max(serials) + 1}" if serials else "")
    try:
        target = save_checkpoint(
            root / name, eval_model, tokenizer_record, experiment, training_state, registry, shards
        )
        fsync_dir(root)
        replace_symlink(pointer, f"{CHECKPOINT_VERSIONS_DIR}/{name}")
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "writ" not in str(exc).lower():
            raise  # not a failed write (torch.save reports those as RuntimeError)
        previous = latest_checkpoint(run_dir)
        kept = f"the previous checkpoint {previous} is intact" if previous else "none was saved"
        raise CheckpointWriteError(
            f"could not write checkpoint {root / name}: {write_failure(exc, root)}; {kept}"
        ) from exc
    # the version just written is always kept; it supersedes older writes at its step (the
    # final checkpoint after a periodic one: only its eval differs)
    kept_steps = {step}
    for version in checkpoint_versions(run_dir):
        key = version_key(version) or (-1, 0)
        if version == target:
            continue
        if key[0] in kept_steps or len(kept_steps) >= max(1, keep):
            shutil.rmtree(version, ignore_errors=True)
        else:
            kept_steps.add(key[0])
    for stale in root.glob(".step-*.tmp-*"):  # temporaries of a crashed writer
        shutil.rmtree(stale, ignore_errors=True)
    return target


def written_by_store(path: Path) -> bool:
    """Whether `path`, a run directory's `checkpoint` or `checkpoints` entry, looks as this
    store writes it (what `--overwrite` may delete)."""
    if path.name == LATEST_CHECKPOINT:
        if path.is_symlink():
            return os.readlink(path).startswith(f"{CHECKPOINT_VERSIONS_DIR}/")
        return (path / MODEL_DIR / CONFIG_FILE).is_file()  # a pre-versioning checkpoint
    if path.name == CHECKPOINT_VERSIONS_DIR and path.is_dir() and not path.is_symlink():
        return all(
            child.name.startswith(("step-", ".step-")) or child.name == LEGACY_VERSION
            for child in path.iterdir()
        )
    return False


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory for a run dir (its newest checkpoint), a checkpoint dir or
    its `model/` dir."""
    path = Path(path)
    for candidate in (path, path / LATEST_CHECKPOINT, path.parent):
        if (candidate / MODEL_DIR / CONFIG_FILE).is_file():
            return candidate
    newest = latest_checkpoint(path)
    if newest is not None:
        return newest
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    raise FileNotFoundError(
        f"{path} is not a checkpoint written by `oemdm train` (expected {LATEST_CHECKPOINT}/"
        f"{MODEL_DIR}/{CONFIG_FILE} inside a run directory)"
    )


def load_training_state(checkpoint: Path, map_location: str = "cpu") -> dict[str, Any]:
    """`training_state.pt` of a checkpoint; a corrupt or truncated file raises
    `CheckpointError` naming it."""
    path = Path(checkpoint) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"missing {STATE_FILE} in checkpoint {checkpoint}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # unpickling errors of every kind
        raise CheckpointError(
            f"{path}: cannot be read, the file is corrupt or truncated ({_short(exc)})"
        ) from None
    missing = [k for k in ("step", "model", "optimizer", "scheduler", "rng") if k not in state]
    if not isinstance(state, dict) or missing:
        raise CheckpointError(f"{path}: not a training state (missing {', '.join(missing)})")
    return state


def load_json(path: Path) -> dict[str, Any]:
    """A JSON file of a checkpoint; missing or corrupt files raise naming the file."""
    return read_json_object(path, f"missing {path.name} in checkpoint {path.parent}")


def write_failure(exc: BaseException, directory: Path) -> str:
    """Why a write into `directory` failed, in words (disk full, read-only, …)."""
    import errno

    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC:
        return f"no space left on the device (disk full) ({_short(exc)})"
    if code == errno.EROFS:
        return f"the file system is read-only ({_short(exc)})"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied: {directory} is not writable ({_short(exc)})"
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(directory).f_bavail == 0:
            return f"no space left on the device (disk full) ({_short(exc)})"
    if not os.access(directory, os.W_OK):
        return f"{directory} is not writable ({_short(exc)})"
    return _short(exc)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def build_tokenizer(record: dict[str, Any], registry: Registry | None = None):
    """Rebuild a fitted tokenizer from its `tokenizer.json` record."""
    registry = resolve_registry(registry)
    cls = registry.get("tokenizer", record["name"])
    options = cls.validate_options(prefix="data.tokenizer", **record["options"])
    tokenizer = cls.from_options(options, registry=registry)
    tokenizer.load_state(record.get("state") or {})
    return tokenizer


def tokenizer_record(tokenizer) -> dict[str, Any]:
    return {"name": tokenizer.name, "options": tokenizer.get_options(), "state": tokenizer.state()}
