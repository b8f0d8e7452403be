"""Stopping a training run cleanly on SIGINT (Ctrl-C) or SIGTERM (schedulers, `timeout`).

The handlers only record the signal; the training loop looks at `StopSignal.received` at
each step boundary, saves a checkpoint of that consistent state and raises `Interrupted`.
A signal can therefore never land between `optimizer.step()` and the step counter. The
handlers are installed explicitly, because a job started in the background of a shell
script inherits SIGINT as ignored. A second signal of the same kind stops at once with
`KeyboardInterrupt` and saves nothing (the last checkpoint stays as it was). Work that
changes no training state (evaluation, sampling) runs under `StopSignal.immediate`, where
the first signal stops it at once. Outside training (start-up, `oemdm eval`, `oemdm
sample`), the `oemdm` command's handlers (`install_handlers`) raise `Interrupted` at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A signal stopped the command; `exit_code` is 128 + signum (130 for SIGINT, 143 for
    SIGTERM). `phase` names where it landed when it stopped the work at once (e.g.
    "evaluation", "sampling"; "" at a training step boundary)."""

    def __init__(self, message: str, signum: int, phase: str = "") -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
        self.phase = phase


def raise_interrupted(signum: int, frame) -> None:
    """A signal handler that stops the work in progress at once with `Interrupted`: what the
    `oemdm` command installs for SIGINT and SIGTERM before anything else (start-up, eval,
    sampling), so that the first signal ends it with the documented exit code."""
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}", signum)


def install_handlers() -> dict[int, signal._HANDLER]:
    """Make SIGINT and SIGTERM raise `Interrupted` (main thread only; returns the previous
    handlers). SIGINT is installed even when inherited as ignored (a job started in the
    background of a shell script)."""
    previous: dict[int, signal._HANDLER] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            previous[signum] = signal.signal(signum, raise_interrupted)
    return previous


class StopSignal:
    """Context manager: while active, SIGINT and SIGTERM set `received` (the signal number).

    Outside the main thread (where Python cannot install handlers) it does nothing and the
    default behaviour stays.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, signal._HANDLER] = {}
        self._phase: str | None = None

    def _handle(self, signum: int, frame) -> None:
        if self._phase is not None:
            self.received = signum
            raise Interrupted(
                f"interrupted by {self.name} during {self._phase}", signum, self._phase
            )
        if self.received is not None:  # asked twice: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.received = signum

    @contextlib.contextmanager
    def immediate(self, phase: str) -> Iterator[None]:
        """Inside the block a signal raises `Interrupted(phase=phase)` at once instead of
        waiting for a step boundary: for work that changes no training state (evaluation,
        sampling). A signal received before the block raises on entry."""
        if self.received is not None:
            raise Interrupted(f"interrupted by {self.name} before {phase}", self.received, phase)
        previous, self._phase = self._phase, phase
        try:
            yield
        finally:
            self._phase = previous

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received else ""

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
