"""Where and with what a result was measured: host facts, tool versions, the git state.

Two views of the same facts. ``collect`` gathers everything a result file records.
``environment_fingerprint`` keeps only what changes a measurement (kernel, CPU, KVM kind,
hypervisor and Incus versions): it is one part of the cache key. Neither reads
environment variables beyond those an experiment lists in its block, so no secret ever
lands in a committed result.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chronicle import __version__

# one definition of each probe: the doctor, the subjects and provenance agree
from chronicle.lab.host import kvm_kind, qemu_version, tool_version


def utc_now() -> str:
    """``2026-11-26T22:30:00.123456Z``: sortable, unambiguous, and what result ids come from."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def os_name(os_release: Path = Path("/etc/os-release")) -> str:
    try:
        for line in os_release.read_text(encoding="utf-8").splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


@functools.cache
def tool_versions() -> dict[str, str]:
    """Versions of the hypervisors and Incus found on PATH; absent tools are left out.

    Cached per process: each probe forks a program, and a ``lab list`` asks per experiment.
    """
    found = {
        "qemu": qemu_version(),
        # the daemon's version, which the client may not share; the client when no daemon
        "incus": tool_version("incusd") or tool_version("incus"),
        "firecracker": tool_version("firecracker"),
        "cloud-hypervisor": tool_version("cloud-hypervisor"),
    }
    return {tool: version for tool, version in found.items() if version}


def environment_fingerprint() -> dict[str, Any]:
    """The facts whose change makes an old measurement no longer comparable."""
    return {
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "machine": platform.machine(),
        "kvm_kind": kvm_kind(),
        "tools": tool_versions(),
    }


def git_state(root: Path, sources: Iterable[str] = ()) -> dict[str, Any]:
    """Commit and dirty flags of the repo at ``root``; ``{}`` when it is not a git checkout.

    ``dirty`` is the whole tree; ``sources_dirty`` only the experiment's own script and
    inputs (paths relative to ``root``) — what decides whether the commit alone
    reproduces the run. Stored results never count as dirt: a fresh run is always beside
    uncommitted results of the run before it.
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=20,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {}
    status = git("status", "--porcelain", "--", ".", ":(exclude)experiments/results")
    state = {"commit": commit.strip(), "dirty": bool(status and status.strip())}
    sources = list(sources)
    if sources:
        own = git("status", "--porcelain", "--", *sources)
        state["sources_dirty"] = bool(own and own.strip())
    return state


def describe_git(git: Mapping[str, Any]) -> str:
    """One line for people: the commit, and whether it alone reproduces the run."""
    if not git:
        return "not a git checkout"
    text = str(git.get("commit", "?"))[:12]
    if git.get("sources_dirty"):
        return text + " (script or inputs changed since this commit)"
    if "sources_dirty" in git and git.get("dirty"):
        return text + " (script and inputs as committed; other files changed)"
    return text + (" (dirty)" if git.get("dirty") else "")


def host() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "os": os_name(),
        "hostname": platform.node(),
        "kvm_kind": kvm_kind(),
    }


class HostLoad:
    """How busy the machine was around a run: a busy host slows what it measures, so a
    result says so. Started before the script, ended after it; :meth:`facts` gives the
    load averages at both ends and the share of all cores' time spent busy in between
    (the run's own work, its guests' included, is part of that share: compare with one
    core per booting guest), and of that, the share spent in niced, low-priority
    processes, which still slow a run: they share the machine with it."""

    def __init__(self) -> None:
        self.start = (_loadavg(), _cpu_ticks())

    def facts(self) -> dict[str, Any]:
        (load_start, (busy_start, niced_start, all_start)), load_end = self.start, _loadavg()
        busy_end, niced_end, all_end = _cpu_ticks()
        spent = all_end - all_start

        def share(ticks: int) -> float | None:
            return round(ticks / spent, 3) if spent > 0 else None

        return {"loadavg_start": load_start, "loadavg_end": load_end,
                "busy": share(busy_end - busy_start), "niced": share(niced_end - niced_start)}


def describe_load(load: Mapping[str, Any]) -> str:
    """``provenance.load`` in words, for ``lab show`` and the lab pages."""
    start, end = load.get("loadavg_start") or ["?"], load.get("loadavg_end") or ["?"]
    busy, niced = load.get("busy"), load.get("niced")
    text = f"load average {start[0]} at the start, {end[0]} at the end"
    if busy is not None:
        text += f"; all cores {busy:.0%} busy during the run, its own work included"
    if niced:
        text += f" ({niced:.0%} in other, niced processes)"
    return text


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_ticks() -> tuple[int, int, int]:
    """(busy, niced, all) clock ticks of every core since boot, from /proc/stat's ``cpu``
    line (user, nice, system, idle, iowait, irq, softirq, steal); idle and iowait are the
    idle part, guest time is already inside user and nice."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, fields[1], sum(fields)


def collect(
    root: Path,
    *,
    env_names: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    sources: Iterable[str] = (),
) -> dict[str, Any]:
    """Provenance for a run about to start; the runner adds ``finished`` and script facts.

    ``sources``: the experiment's script and input files, relative to ``root``.
    """
    environ = os.environ if environ is None else environ
    return {
        "host": host(),
        "tools": tool_versions(),
        "python": platform.python_version(),
        "chronicle": __version__,
        "git": git_state(root, sources),
        "env": {name: environ[name] for name in env_names if name in environ},
        "started": utc_now(),
    }


def deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` into a copy of ``base``; nested tables merge, anything else replaces."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged
