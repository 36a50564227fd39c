"""What holds a run's processes: its own cgroup v2 where the host allows, else its group.

A process group is easy to leave: any helper that calls ``setsid`` (as ``qemu
-daemonize`` does) is out of it and survives the run, its timeout and Ctrl-C. A cgroup
cannot be left that way: children are born in their parent's cgroup, and only a
privileged write to ``cgroup.procs`` moves them out. So where cgroup v2 is mounted and
ours to write, each run gets ``<our cgroup>/chronicle/<run>``, the script is moved into
it before it execs (nothing it starts is ever outside), and clean-up ends every process
in it with ``cgroup.kill`` before removing it. Elsewhere the process group is all there
is, and the result's provenance says so; clean-up then also ends every process whose
environment still names the run (which catches a ``setsid`` helper, unless it cleared
its environment).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronicle.lab.probes import cgroup_mounts
from chronicle.lab.procgroup import alive, kill_group

CGROUP = "cgroup"
PROCESS_GROUP = "process-group"
PARENT = "chronicle"
# Set in every script's environment; inherited by what it starts, setsid or not.
RUN_ENV = "CHRONICLE_RUN"
WEAKER = ("process group only: a helper that calls setsid (as qemu -daemonize does) "
          "can outlive the run")


def v2_mount() -> Path | None:
    """Where the unified (v2) hierarchy is mounted, found the way the kernel lists it."""
    try:
        return cgroup_mounts().get("")
    except (OSError, ValueError):
        return None


def own_cgroup(mount: Path, proc_cgroup: Path = Path("/proc/self/cgroup")) -> Path | None:
    """The folder of our own v2 cgroup (the ``0::`` line); runs are made below it."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return mount / line[3:].lstrip("/")
    return None


def runs_parent() -> tuple[Path | None, str]:
    """The folder runs' cgroups go in, or None with the reason it cannot be used."""
    mount = v2_mount()
    if mount is None:
        return None, "no cgroup v2 hierarchy is mounted"
    own = own_cgroup(mount)
    if own is None or not own.is_dir():
        return None, f"our own cgroup is not under {mount}"
    parent = own / PARENT
    if not os.access(parent if parent.is_dir() else own, os.W_OK):
        return None, f"{own} is not writable by this user"
    return parent, f"cgroup v2 at {mount}: each run in its own cgroup under {parent}"


def cgroup_procs(folder: Path) -> list[int]:
    """The live processes in ``folder`` and below (a zombie is no longer listed)."""
    pids: list[int] = []
    for procs in sorted(folder.rglob("cgroup.procs")):
        try:
            pids += [int(p) for p in procs.read_text().split()]
        except (OSError, ValueError):
            continue
    return pids


def end_cgroup(folder: Path, wait: float = 5.0) -> bool:
    """SIGKILL everything in ``folder`` and remove it; True when it is gone.

    ``cgroup.kill`` (Linux 5.14) kills every process below at once, forks in flight
    included; older kernels get SIGKILL pid by pid until nothing is listed.
    """
    if not folder.is_dir():
        return True
    kill_file = folder / "cgroup.kill"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        pids = cgroup_procs(folder)
        if pids:
            if kill_file.exists():
                try:
                    kill_file.write_text("1")
                except OSError:
                    _kill_each(pids)
            else:
                _kill_each(pids)
            time.sleep(0.02)
            continue
        if _remove_tree(folder):
            return True
        time.sleep(0.05)
    return not folder.exists()


def tagged_pids(run: str) -> list[int]:
    """Processes whose environment names ``run``: what we can find without a cgroup."""
    needle = f"{RUN_ENV}={run}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_all(pids: list[int], wait: float = 5.0) -> None:
    """SIGKILL each of ``pids`` and wait (a while) until none is running."""
    _kill_each(pids)
    deadline = time.monotonic() + wait
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)


def _kill_each(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _remove_tree(folder: Path) -> bool:
    """rmdir from the leaves up (a script may have made cgroups of its own below)."""
    children = sorted((p for p in folder.rglob("*") if p.is_dir()),
                      key=lambda p: len(p.parts), reverse=True)
    try:
        for child in (*children, folder):
            child.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


@dataclass
class Containment:
    """How one run is held: its kind, the cgroup folder (if any), a note for provenance."""

    kind: str
    run: str
    cgroup: Path | None = None
    note: str | None = None

    @classmethod
    def plan(cls, run: str) -> Containment:
        """The containment this host gives a run named ``run`` (nothing made yet)."""
        parent, why = runs_parent()
        if parent is None:
            return cls(PROCESS_GROUP, run, note=f"{WEAKER} ({why})")
        return cls(CGROUP, run, cgroup=parent / run)

    def create(self) -> None:
        """Make the cgroup; on failure fall back to the group, with the reason."""
        if self.cgroup is None:
            return
        try:
            self.cgroup.mkdir(parents=True)
        except OSError as exc:
            self.weaken(f"cannot make {self.cgroup}: {exc.strerror}")

    def weaken(self, why: str) -> None:
        if self.cgroup is not None and self.cgroup.is_dir():
            end_cgroup(self.cgroup)
        self.kind, self.cgroup, self.note = PROCESS_GROUP, None, f"{WEAKER} ({why})"

    def end(self, proc: subprocess.Popen, grace: float) -> bool:
        """SIGTERM the script's group, then SIGKILL everything the run holds.

        True when nothing is left (the record of the run can go).
        """
        kill_group(proc, grace)
        if self.cgroup is None:
            kill_all(tagged_pids(self.run))
            return True
        return end_cgroup(self.cgroup)

    def provenance(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"kind": self.kind}
        if self.note:
            facts["note"] = self.note
        return facts


def spawn(containment: Containment, argv: list[str], **popen: Any) -> subprocess.Popen:
    """Popen in its own session, inside ``containment``'s cgroup when it has one.

    The child moves itself into the cgroup before it execs the script, so there is no
    moment at which the script (or anything it starts) runs outside. ``cgroup.procs`` is
    opened here in the parent: the child makes one write and nothing else.
    """
    if containment.cgroup is not None:
        try:
            fd = os.open(containment.cgroup / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            containment.weaken(f"cannot open {containment.cgroup}: {exc.strerror}")
    if containment.cgroup is None:
        return subprocess.Popen(argv, start_new_session=True, **popen)

    def enter() -> None:
        os.write(fd, b"0")  # "0" is the writer itself

    try:
        return subprocess.Popen(argv, start_new_session=True, preexec_fn=enter, **popen)
    except subprocess.SubprocessError as exc:
        # The kernel refused the move (its delegation rules): nothing ran, so the
        # script starts again, held by its group only.
        containment.weaken(f"cannot move a process into {containment.cgroup}: {exc}")
    finally:
        os.close(fd)
    return subprocess.Popen(argv, start_new_session=True, **popen)
