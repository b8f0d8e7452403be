"""Run directories: collision-free default names, refusal to mix two runs, and a lock.

- `new_run_dir(parent, prefix)` creates `<prefix>-<timestamp>` with an exclusive `mkdir`
  (adding `-2`, `-3`, … when taken), so two runs started in the same second never share one.
- `check_run_dir(run_dir, resume, overwrite)` refuses a directory that already holds a run
  unless the run is resumed or `overwrite` clears it; `overwrite` deletes only files that
  look as a run writes them, and refuses a directory holding anything else under those names.
- `RunLock` holds an exclusive `flock` on `<run>/run.lock` (which also records the pid) for
  the whole run: a second process training in the same directory fails at once, naming the
  holder. The kernel drops the lock when its holder dies, so a stale lock file left by a
  killed run is simply taken over.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from datetime import datetime
from pathlib import Path

from oemdm_core.errors import RunDirError

LOCK_FILE = "run.lock"
# What a training run writes into its directory (what --overwrite removes).
RUN_FILES = ("checkpoint", "checkpoints", "metrics.jsonl", "tb", "config.yaml")
EXPERIMENT_SECTIONS = ("data", "model", "training", "evaluation", "sampling")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: fall back to the recorded pid
    fcntl = None  # type: ignore[assignment]


def new_run_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """Create and return a fresh `parent/<prefix>-<YYYYmmdd-HHMMSS>[-k]` directory."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}"
    for k in range(1, 10_000):
        path = parent / (stem if k == 1 else f"{stem}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RunDirError(f"could not create a fresh run directory {parent / stem}-*")


def holds_run(run_dir: Path) -> list[str]:
    """The run files present in `run_dir` (empty if it holds no run)."""
    return [
        name for name in RUN_FILES if (run_dir / name).exists() or (run_dir / name).is_symlink()
    ]


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run where one already is (unless `overwrite`: clear it)."""
    if resume:
        return
    found = holds_run(run_dir)
    if not found:
        return
    if not overwrite:
        from oemdm_core.runtime.checkpoint.store import latest_checkpoint

        resume_hint = (
            f"continue it with `oemdm train --resume {run_dir}`, or "
            if latest_checkpoint(run_dir) is not None
            else "it has no checkpoint to resume from; "
        )
        raise RunDirError(
            f"run directory {run_dir} already holds a run ({', '.join(found)}); {resume_hint}"
            f"start over with --overwrite (deletes its checkpoints and logs), or choose "
            f"another training.run_dir"
        )
    foreign = [name for name in found if not _written_by_oemdm(run_dir / name)]
    if foreign:
        raise RunDirError(
            f"--overwrite {run_dir}: not a run directory written by oemdm train "
            f"({', '.join(foreign)} not as a run writes them); nothing was deleted. Move "
            "those files away or choose another training.run_dir"
        )
    for name in found:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _written_by_oemdm(path: Path) -> bool:
    """Whether `path` (one of `RUN_FILES`) looks as a training run writes it; --overwrite
    deletes nothing else."""
    import json

    import yaml

    from oemdm_core.runtime.checkpoint.store import written_by_store

    name = path.name
    if name in ("checkpoint", "checkpoints"):
        return written_by_store(path)
    if not path.is_symlink() and name == "tb" and path.is_dir():
        return all(
            f.name.startswith("events.out.tfevents.") for f in path.rglob("*") if f.is_file()
        )
    if path.is_file() and not path.is_symlink():
        try:
            if name == "metrics.jsonl":
                lines = path.read_text().splitlines()
                return all("step" in json.loads(line) for line in lines[:-1] if line)
            data = yaml.safe_load(path.read_text())
            return isinstance(data, dict) and set(data) <= set(EXPERIMENT_SECTIONS)
        except (ValueError, TypeError, yaml.YAMLError):
            return False
    return False


def discard_metrics_after(run_dir: Path, step: int) -> None:
    """Drop the `metrics.jsonl` lines logged after `step` (a resumed run logs them again)."""
    import json

    from oemdm_core.files import write_text

    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return
    kept = []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RunDirError(
                f"{path}: line {number} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                "nothing was changed. Remove or repair that line, then resume"
            ) from None
        try:
            if json.loads(line).get("step", 0) > step:
                continue
        except (json.JSONDecodeError, AttributeError):
            continue  # a line cut short by a crash
        kept.append(line + "\n")
    write_text(path, "".join(kept))


class RunLock:
    """An exclusive lock on a run directory for the lifetime of one training process."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise self._busy(_read_pid(fd)) from None
                except OSError as exc:  # a file system without locks (some NFS mounts)
                    import warnings

                    from oemdm_core.errors import OeMDMWarning

                    warnings.warn(
                        f"cannot lock {self.path} ({exc}); nothing stops a second run from "
                        "using this directory at the same time",
                        OeMDMWarning,
                        stacklevel=3,
                    )
            else:  # pragma: no cover
                pid = _read_pid(fd)
                if pid and pid != os.getpid() and _alive(pid):
                    raise self._busy(pid)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def _busy(self, pid: int | None) -> RunDirError:
        holder = f"pid {pid}" if pid else "another process"
        return RunDirError(
            f"run directory {self.path.parent} is in use by another training run ({holder}, "
            f"lock {self.path}); wait for it to finish, stop it, or choose another "
            f"training.run_dir"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        # The file stays (unlinking it would let two later runs lock two different inodes);
        # emptying it records that nobody holds it.
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:  # pragma: no cover - used without fcntl only
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
