"""A script's process group and the signals that end it.

The runner starts each script in its own session. Ctrl-C or SIGTERM reaching Chronicle
is noted by a ``SignalLatch`` and becomes ``RunInterrupted`` where the runner checks
for it, and ``kill_group`` then ends the script and everything it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path


class RunInterrupted(Exception):
    """SIGINT or SIGTERM reached Chronicle while a script ran."""


def kill_group(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM the script's process group, SIGKILL whatever is left after ``grace`` s."""
    pgid = proc.pid  # a session leader's pgid is its pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            proc.poll()
            if not group_alive(pgid):
                return
            time.sleep(0.05)
    proc.poll()


def stat_fields(pid: int | str) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name (state, ppid, pgrp, …); None when gone."""
    try:
        # The command name may hold spaces and parentheses: split after the last ')'.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie is dead for our purposes (only waiting to be reaped)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def group_alive(pgid: int) -> bool:
    """True while some non-zombie process is left in the group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = stat_fields(entry.name)
        if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def ignore_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


class SignalLatch:
    """SIGINT or SIGTERM, noted by the handler and raised where the code ``check``s.

    A handler that raised could raise anywhere: inside ``Popen``, losing the child's
    pid, or inside a finalizer (a connection pool closed by the garbage collector),
    where Python prints the exception and drops it, and the run goes on as if no
    Ctrl-C had come."""

    def __init__(self) -> None:
        self.received: str | None = None

    def check(self) -> None:
        if self.received:
            raise RunInterrupted(self.received)


def trap_signals(latch: SignalLatch) -> Callable[[], None]:
    """Note SIGINT/SIGTERM in ``latch`` from now on; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def note(signum, frame):
        latch.received = latch.received or signal.Signals(signum).name

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
