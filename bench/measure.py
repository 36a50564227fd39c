"""Timing one whole process: wall clock and the peak memory of its process tree.

Wall time is taken around the child, start-up included, because that is what an author
waits for. CPU time (user + system, the child and every descendant it waited for) is
kept beside it: on a machine shared with other work, wall time swings with the load but
CPU time barely does, so it tells a real change from a noisy neighbour.

Peak memory is the larger of two readings:

- the kernel's ``ru_maxrss`` for the child (via ``wait4``): exact, but only for the
  single largest process of the tree;
- the sum of ``VmRSS`` over the whole tree, sampled every 50 ms from ``/proc``: catches
  worker pools, but may miss a peak shorter than a sample, and counts pages shared
  between forked workers once per worker (an upper bound, not PSS).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SAMPLE_EVERY = 0.05


@dataclass(frozen=True)
class Measurement:
    seconds: float
    cpu_seconds: float  # user + system of the whole tree: less sensitive to a busy machine
    peak_bytes: int
    returncode: int
    stderr_tail: str


def run_measured(cmd: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> Measurement:
    """Run ``cmd`` to completion; its stdout is discarded, the end of its stderr kept."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=err, stdin=subprocess.DEVNULL)
        sampler = _TreeSampler(proc.pid)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", "replace")
    peak = max(usage.ru_maxrss * 1024, sampler.peak)  # ru_maxrss is in KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime
    return Measurement(seconds, cpu, peak, proc.returncode, tail)


class _TreeSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._done.wait(SAMPLE_EVERY)

    def stop(self) -> None:
        self._done.set()
        self.join()


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (0 once it has exited)."""
    total = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        total += _rss(current)
        todo.extend(_children(current))
    return total


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as handle:
                found.extend(int(child) for child in handle.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found
