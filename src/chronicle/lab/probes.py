"""Host-side probes: boot-done watcher, memory (PSS/RSS, cgroup), disk, HTTP readiness.

Every probe looks at the host only and every network probe talks to 127.0.0.1 only,
so the numbers mean the same thing for a microVM and for a container.
"""

from __future__ import annotations

import os
import re
import selectors
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


# -- memory -------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessMemory:
    """Proportional and resident set size of one or more processes, in KiB."""

    pss_kib: int
    rss_kib: int
    pids: tuple[int, ...] = ()

    def __add__(self, other: ProcessMemory) -> ProcessMemory:
        return ProcessMemory(
            self.pss_kib + other.pss_kib, self.rss_kib + other.rss_kib, self.pids + other.pids
        )


NO_MEMORY = ProcessMemory(0, 0)


def process_memory(pid: int) -> ProcessMemory:
    """PSS and RSS from ``/proc/<pid>/smaps_rollup``.

    PSS, not RSS, is the honest figure: it charges shared pages (the qemu binary, libc,
    the page cache of a kernel image) to each sharer in proportion.
    """
    fields: dict[str, int] = {}
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Pss", "Rss"):
            fields[name] = int(rest.split()[0])
    return ProcessMemory(fields.get("Pss", 0), fields.get("Rss", 0), (pid,))


def total_memory(pids: Iterable[int]) -> ProcessMemory:
    """Sum over processes; ones that exit while we read are simply not counted."""
    total = NO_MEMORY
    for pid in pids:
        try:
            total = total + process_memory(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may contain spaces and parentheses: parse after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, parents first."""
    seen, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.append(current)
        queue += children_of(current)
    return seen


def process_exe(pid: int) -> str:
    """The executable's path ('' when the process is gone or not ours to read)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def process_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def cgroup_mounts(mountinfo: Path = Path("/proc/self/mountinfo")) -> dict[str, Path]:
    """Where each cgroup hierarchy is mounted: ``""`` for v2, else the v1 controller names.

    Not always ``/sys/fs/cgroup``: hybrid hosts mount v2 at ``/sys/fs/cgroup/unified``.
    """
    mounts: dict[str, Path] = {}
    for line in mountinfo.read_text().splitlines():
        head, _, tail = line.partition(" - ")
        fstype, _, options = tail.split(" ")[:3]
        mount_point = Path(head.split(" ")[4])
        if fstype == "cgroup2":
            mounts.setdefault("", mount_point)
        elif fstype == "cgroup":
            for option in options.split(","):
                if option in ("memory", "pids", "cpu", "cpuacct", "name=systemd"):
                    mounts.setdefault(option, mount_point)
    return mounts


def cgroup_of(pid: int) -> Path | None:
    """The folder of a process's cgroup: v2 when mounted, else the v1 ``pids``/``memory``."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    mounts = cgroup_mounts()
    paths: dict[str, str] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    for controller in ("", "pids", "memory"):
        if controller in mounts and controller in paths:
            folder = mounts[controller] / paths[controller].lstrip("/")
            if folder.is_dir():
                return folder
    return None


def cgroup_pids(cgroup: Path) -> list[int]:
    """Every process in a cgroup and in the cgroups below it."""
    pids: list[int] = []
    for procs in sorted(cgroup.rglob("cgroup.procs")):
        try:
            pids += [int(p) for p in procs.read_text().split()]
        except OSError:
            continue
    return pids


# -- disk ---------------------------------------------------------------------------


def file_bytes(paths: Iterable[Path]) -> int:
    """Apparent size of the files a VM boots from (kernel, initrd, disk images)."""
    return sum(Path(p).stat().st_size for p in paths)


# -- network ------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def http_answers(port: int, timeout: float = 0.5) -> bool:
    """One attempt: does an HTTP server answer ``GET /`` on 127.0.0.1:port?

    Any status line counts: the deployer's "app is up" is "it speaks HTTP", and a
    404 from an empty document root is as alive as a 200.
    """
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def http_ready(port: int, deadline: float, interval: float = 0.02) -> float:
    """Poll until HTTP answers on 127.0.0.1:port; return the monotonic time it did.

    Port forwarders (qemu's hostfwd, an Incus proxy device) accept the connection
    before anything listens inside, then close it — so only a status line counts.
    Raises TimeoutError at ``deadline`` (a ``time.monotonic()`` value).
    """
    while True:
        if http_answers(port, timeout=max(0.05, min(0.5, deadline - time.monotonic()))):
            return time.monotonic()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing answered HTTP on {LOOPBACK}:{port}")
        time.sleep(interval)


# -- serial console -----------------------------------------------------------------


@dataclass(frozen=True)
class Sighting:
    """When a pattern first appeared on a stream, and its match."""

    at: float
    match: re.Match[bytes]


class StreamWatcher:
    """Reads a child's pipes unbuffered and notes when a pattern's bytes arrive.

    ``os.read`` on non-blocking pipes through ``selectors`` — never ``readline`` on a
    buffered file — so the clock stops when the marker's bytes reach us, not when a
    buffer happens to fill. Keeps the tail of each stream for error reports.
    """

    TAIL = 8192

    def __init__(self, streams: dict[str, int]):
        self.selector = selectors.DefaultSelector()
        self.text: dict[str, bytearray] = {name: bytearray() for name in streams}
        self.scanned: dict[str, int] = dict.fromkeys(streams, 0)
        self.dropped: dict[str, int] = dict.fromkeys(streams, 0)
        self.arrived: dict[str, float] = dict.fromkeys(streams, 0.0)
        for name, fd in streams.items():
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ, name)

    @property
    def open(self) -> bool:
        return bool(self.selector.get_map())

    def pump(self, timeout: float) -> None:
        """Read whatever is ready within ``timeout`` seconds."""
        if not self.open:
            time.sleep(max(0.0, timeout))
            return
        for key, _ in self.selector.select(max(0.0, timeout)):
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self.selector.unregister(key.fd)
                continue
            self.arrived[key.data] = time.monotonic()
            self.text[key.data] += chunk

    def find(self, stream: str, pattern: re.Pattern[bytes]) -> Sighting | None:
        """Look for ``pattern`` in the bytes that arrived since the last look.

        Call it after every ``pump``: the sighting's time is when the last chunk of
        that pump arrived, which is when the pattern became complete.
        """
        buf = self.text[stream]
        # Start a little before the old end so a marker split across reads is found.
        start = max(0, self.scanned[stream] - 256)
        match = pattern.search(bytes(buf), start)
        self.scanned[stream] = len(buf)
        self._trim(stream)
        return Sighting(self.arrived[stream], match) if match else None

    def _trim(self, stream: str) -> None:
        buf = self.text[stream]
        excess = len(buf) - 4 * self.TAIL
        if excess > 0:
            del buf[:excess]
            self.scanned[stream] -= excess
            self.dropped[stream] += excess

    def tail(self, stream: str, lines: int = 15) -> str:
        text = bytes(self.text[stream][-self.TAIL :]).decode(errors="replace")
        return "\n".join(text.replace("\r", "").splitlines()[-lines:])

    def close(self) -> None:
        self.selector.close()
