"""One writer per experiment: an advisory ``flock`` held for the whole run.

The lock file lives in ``.chronicle/lab/`` (git-ignored) rather than beside the results,
so a committed results folder never carries lock files. The kernel drops a ``flock``
when its holder dies, so a crashed run never leaves a stale lock behind; the PID
written inside is only there to name the holder in the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from chronicle.errors import LabError


class ExperimentLock:
    def __init__(self, cache: Path, experiment: str):
        self.experiment = experiment
        self.path = cache / "lab" / f"{experiment}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LabError(
                f"experiment {self.experiment} is being run by pid {holder}; "
                "wait for it to finish or stop it",
                self.path,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ExperimentLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
