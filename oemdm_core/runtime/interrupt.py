"""Stopping a training run cleanly on SIGINT (Ctrl-C) or SIGTERM (schedulers, `timeout`).

The handlers only record the signal; the training loop looks at `StopSignal.received` at
each step boundary, saves a checkpoint of that consistent state and raises `Interrupted`.
A signal can therefore never land between `optimizer.step()` and the step counter. The
handlers are installed explicitly, because a job started in the background of a shell
script inherits SIGINT as ignored. A second signal of the same kind stops at once with
`KeyboardInterrupt` and saves nothing (the last checkpoint stays as it was).
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving a checkpoint; `exit_code` is 128 + signum
    (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopSignal:
    """Context manager: while active, SIGINT and SIGTERM set `received` (the signal number).

    Outside the main thread (where Python cannot install handlers) it does nothing and the
    default behaviour stays.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:  # asked twice: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.received = signum

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
