"""Stopping a run on SIGINT or SIGTERM: the first signal asks the loop to stop after its
current step (it writes a checkpoint and raises `Interrupted`); a second one stops at once
(`StoppedAtOnce`, raised wherever the process is), keeping the last checkpoint written."""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)  # the signals that stop a run


def exit_code(signum: int) -> int:
    """The shell's exit status for a process ended by `signum`: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + signum


class Interrupted(Exception):
    """The run stopped on a signal after its current step and wrote a checkpoint."""

    def __init__(self, signum: int, run_dir: Path, env_steps: int):
        self.signum, self.run_dir, self.env_steps = signum, run_dir, env_steps
        super().__init__(f"stopped by {signal.Signals(signum).name} at {env_steps} env steps per task, "
                         f"checkpoint written; continue with: ezm train --resume {run_dir}")


class StoppedAtOnce(BaseException):
    """A second stop signal: the run ends where it is, without a new checkpoint."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped at once by a second {signal.Signals(signum).name}; "
                         "the run directory keeps its last checkpoint")


class StopRequests:
    """Context manager: while inside, SIGINT and SIGTERM set `signum` instead of ending the
    process, and a second one raises StoppedAtOnce. Outside the main thread (where Python
    cannot take signals) it changes nothing."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first stop signal received, if any
        self._previous: dict[int, object] = {}  # signal -> the handler it had before

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise StoppedAtOnce(signum)
        self.signum = signum
        os.write(2, f"\nezm: {signal.Signals(signum).name} received, stopping after the "
                    "current step with a checkpoint (send it again to stop at once)\n".encode())

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
