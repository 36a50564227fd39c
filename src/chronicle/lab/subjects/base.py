"""The one interface every subject follows, and the outcomes it can have.

A subject is something we boot and measure: a microVM under some VMM, an Incus
container or VM. Its life is always the same::

    with QemuMicrovm(...) as vm:          # __enter__ calls start()
        timings = vm.wait_booted(60)      # Timings: boot_ms, guest uptime, ...
        footprint = vm.measure()          # Footprint: PSS/RSS, cgroup, disk
    # __exit__ calls cleanup(): kills the process group / deletes the instance

``cleanup()`` runs on success, error, timeout, Ctrl-C and SIGTERM (turned into the
``Terminated`` exception while a subject is open), and is idempotent. A host that cannot
run a subject raises ``Unsupported`` from ``check()`` — reported, never a number.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Self

from chronicle.errors import LabError
from chronicle.lab.probes import (
    StreamWatcher,
    descendants,
    file_bytes,
    http_answers,
    process_exe,
    total_memory,
)

MIB = 1024 * 1024


class Unsupported(Exception):  # noqa: N818 - an outcome, not a failure
    """This host cannot run the subject; ``reason`` says why, for the result's provenance."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SubjectError(LabError):
    """A subject failed to boot: the VMM died, a request failed, a guest misbehaved."""


class BootTimeout(SubjectError):
    """The guest never said it booted within the time allowed."""


class Terminated(BaseException):  # noqa: N818 - like KeyboardInterrupt, for SIGTERM
    """SIGTERM arrived while a subject was open: unwind so that clean-up runs."""


def _slug(experiment: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in experiment.lower()).strip("-") or "lab"


def unique_name(experiment: str) -> str:
    """``chronicle-<experiment>-<random>``: ours, recognisable, never reused."""
    return f"chronicle-{_slug(experiment)}-{secrets.token_hex(4)}"


def made_by(name: str, experiment: str) -> bool:
    """Whether ``name`` came from ``unique_name(experiment)`` (and not a longer name's)."""
    prefix = f"chronicle-{_slug(experiment)}-"
    suffix = name[len(prefix):]
    return name.startswith(prefix) and len(suffix) == 8 and all(
        c in "0123456789abcdef" for c in suffix)


@dataclass(frozen=True)
class Timings:
    """How long a boot took, in milliseconds, each measured from the subject's own t0.

    For a VM t0 is just before the VMM is spawned; for Incus, just before the create
    request. ``boot_ms`` is the headline figure: spawn→marker for a VM, create→first
    successful exec for a container.
    """

    boot_ms: float
    guest_uptime_ms: float | None = None  # the guest kernel's own clock at the marker
    running_ms: float | None = None  # Incus: create → status Running
    http_ms: float | None = None  # t0 → an HTTP answer on 127.0.0.1
    vmm_boot_timer_ms: float | None = None  # Firecracker's boot-timer device, when present

    @property
    def host_overhead_ms(self) -> float | None:
        """VMM start-up and firmware: total minus the time the guest kernel counted."""
        if self.guest_uptime_ms is None:
            return None
        return self.boot_ms - self.guest_uptime_ms

    def metrics(self) -> dict[str, float]:
        values = {
            "boot_ms": self.boot_ms,
            "guest_uptime_ms": self.guest_uptime_ms,
            "host_overhead_ms": self.host_overhead_ms,
            "running_ms": self.running_ms,
            "http_ms": self.http_ms,
            "vmm_boot_timer_ms": self.vmm_boot_timer_ms,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class Footprint:
    """What the subject costs the host, idle after boot, in bytes.

    ``pss``/``rss`` are summed over the host processes that exist for this subject.
    ``cgroup``/``cgroup_peak`` are the Incus cgroup's figures (they include page cache,
    so they are not comparable with PSS). ``disk`` is what the subject needed on disk
    to boot: kernel+initrd(+images) for a VM, the root volume's usage for Incus (None
    where the storage driver does not report it: never a made-up number).
    """

    pss: int
    rss: int
    disk: int | None
    cgroup: int | None = None
    cgroup_peak: int | None = None
    image: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        values = {
            "pss_mib": self.pss,
            "rss_mib": self.rss,
            "disk_mib": self.disk,
            "cgroup_mib": self.cgroup,
            "cgroup_peak_mib": self.cgroup_peak,
            "image_mib": self.image,
        }
        return {k: v / MIB for k, v in values.items() if v is not None}


class Subject(ABC):
    """Start, wait until booted, measure, stop — and always clean up.

    ``name`` is the subject as results know it (``qemu-microvm``, ``incus-container``);
    ``facts()`` is what the experiment reports about it (accelerator, versions).
    """

    name: str = "subject"

    def __init__(self) -> None:
        self._old_sigterm: Any = None

    @classmethod
    def check(cls, *args: Any, **kwargs: Any) -> None:
        """Raise ``Unsupported`` when this host cannot run the subject at all."""
        return None

    def facts(self) -> dict[str, Any]:
        return {}

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def wait_booted(self, timeout: float) -> Timings: ...

    @abstractmethod
    def measure(self) -> Footprint: ...

    def stop(self) -> None:
        """End the subject normally; the default is clean-up itself."""
        self.cleanup()

    @abstractmethod
    def cleanup(self) -> None:
        """Remove every trace of the subject. Idempotent; never raises for 'already gone'."""

    # -- context manager: the guarantee that clean-up runs ---------------------------
    def __enter__(self) -> Self:
        self._trap_sigterm()
        try:
            self.start()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        try:
            self.cleanup()
        finally:
            self._restore_sigterm()

    def _trap_sigterm(self) -> None:
        # A bare SIGTERM ends Python without running `finally`, which would leave the
        # VM or instance behind. Only take over the default disposition: a runner that
        # installed its own handler keeps it.
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            self._old_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"signal {signum} (pid {os.getpid()})")


# -- the shared machinery for a VMM we spawn ------------------------------------------


def boot_marker(pattern: re.Pattern[bytes]) -> re.Pattern[bytes]:
    """The guest's marker, complete only once its line has ended (so the number is whole)."""
    return re.compile(pattern.pattern + rb"[\r\n]")


def _die_with_us() -> list[str]:
    # The VMM runs in its own session so Ctrl-C at a terminal does not reach it and we
    # can kill its whole group. The price is that a SIGKILLed experiment would orphan
    # it; `setpriv --pdeathsig` makes the kernel kill it with us (kept across exec).
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


def check_kvm_vmm(binary: str, *, http: bool, kvm_kind: str | None = None) -> None:
    """For VMMs that run on KVM only: installed, hardware KVM, and a way in for HTTP."""
    if shutil.which(binary) is None:
        raise Unsupported(f"{binary} not installed")
    if kvm_kind is None:
        from chronicle.lab import host

        kvm_kind = host.kvm_kind()
    if kvm_kind != "hw":
        raise Unsupported(f"{binary} needs hardware KVM; this host's KVM kind is {kvm_kind}")
    if http:
        raise Unsupported(
            f"{binary} has only TAP networking: its guest cannot be reached on 127.0.0.1"
        )


class VmmProcess(Subject):
    """A VMM started as a child process, booted when its serial console shows the marker.

    t0 is taken just before spawning; boot is done when the marker's bytes arrive on
    stdout (the guest's serial console). The marker carries the guest's own uptime, so
    ``boot_ms - guest_uptime_ms`` is what the VMM and firmware cost. With ``http_port``
    the wait goes on until HTTP answers on 127.0.0.1:http_port.
    """

    marker = boot_marker(re.compile(rb"CHRONICLE-BOOTED uptime=([0-9.]+)"))
    boot_timer: re.Pattern[bytes] | None = None  # a VMM's own boot-time log line

    def __init__(
        self,
        argv: list[str],
        *,
        disk_files: list[Path],
        http_port: int | None = None,
        env: dict[str, str] | None = None,
    ):
        super().__init__()
        self.argv = argv
        self.disk_files = disk_files
        self.http_port = http_port
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.watch: StreamWatcher | None = None
        self.t0 = 0.0

    def start(self) -> None:
        command = _die_with_us() + self.argv
        self.t0 = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                env=self.env,
            )
        except OSError as exc:
            raise SubjectError(f"{self.name}: cannot start {self.argv[0]}: {exc}") from exc
        assert self.proc.stdout and self.proc.stderr
        self.watch = StreamWatcher(
            {"serial": self.proc.stdout.fileno(), "log": self.proc.stderr.fileno()}
        )

    def vmm_pid(self) -> int:
        """The hypervisor's pid (the spawned process itself, unless a runner forks it)."""
        assert self.proc is not None
        return self.proc.pid

    def wait_booted(self, timeout: float) -> Timings:
        assert self.proc is not None and self.watch is not None, "start() first"
        deadline = self.t0 + timeout
        seen = None
        while seen is None:
            self._pump_or_fail(deadline, "print its boot marker")
            seen = self.watch.find("serial", self.marker)
        booted = seen.at
        uptime_ms = float(seen.match.group(1)) * 1000.0
        http_at = self._wait_http(deadline) if self.http_port else None
        timer_ms = self._boot_timer_ms()
        return Timings(
            boot_ms=(booted - self.t0) * 1000.0,
            guest_uptime_ms=uptime_ms,
            http_ms=(http_at - self.t0) * 1000.0 if http_at else None,
            vmm_boot_timer_ms=timer_ms,
        )

    def _pump_or_fail(self, deadline: float, waiting_for: str) -> None:
        assert self.proc is not None and self.watch is not None
        now = time.monotonic()
        if now >= deadline:
            self.cleanup()
            raise BootTimeout(
                f"{self.name}: guest did not {waiting_for} within "
                f"{deadline - self.t0:.0f} s (process group killed){self._tails()}"
            )
        self.watch.pump(min(0.05, deadline - now))
        code = self.proc.poll()
        if code is not None:
            self.watch.pump(0)  # the last words, if any
            self.watch.find("serial", self.marker)
            self.cleanup()
            raise SubjectError(
                f"{self.name}: {Path(self.argv[0]).name} exited with code {code} before "
                f"the guest could {waiting_for}{self._tails()}"
            )

    def _wait_http(self, deadline: float) -> float:
        assert self.http_port is not None
        while True:
            if http_answers(self.http_port, timeout=0.2):
                return time.monotonic()
            self._pump_or_fail(deadline, f"answer HTTP on 127.0.0.1:{self.http_port}")

    def _boot_timer_ms(self) -> float | None:
        if self.boot_timer is None or self.watch is None:
            return None
        for stream in ("log", "serial"):
            seen = self.watch.find(stream, self.boot_timer)
            if seen:
                return float(seen.match.group(1)) / 1000.0  # logged in microseconds
        return None

    def _tails(self) -> str:
        if self.watch is None:
            return ""
        parts = []
        for stream, label in (("serial", "serial console"), ("log", "stderr")):
            tail = self.watch.tail(stream)
            if tail.strip():
                parts.append(f"\n--- last lines of {label} ---\n{tail}")
        return "".join(parts)

    def measure(self) -> Footprint:
        assert self.proc is not None, "start() first"
        if self.proc.poll() is not None:
            raise SubjectError(f"{self.name}: exited with code {self.proc.returncode}")
        pid = self.vmm_pid()
        memory = total_memory(descendants(pid))
        return Footprint(
            pss=memory.pss_kib * 1024,
            rss=memory.rss_kib * 1024,
            disk=file_bytes(self.disk_files),
            detail={"vmm": Path(process_exe(pid)).name, "pids": len(memory.pids)},
        )

    def cleanup(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            _kill_children_first(proc.pid)
            try:
                # The group is ours alone (own session), so this reaches a forked VMM too.
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass  # unkillable (D state); the kernel reaps it when it can
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        if self.watch is not None:
            self.watch.close()


def _kill_children_first(pid: int, wait: float = 0.5) -> None:
    """Kill a runner's forked VMM before the runner, so the runner can reap it.

    Killed together, the child would be orphaned to PID 1 — which on hosts without an
    init system never reaps it, leaving a zombie qemu in the process table.
    """
    children = descendants(pid)[1:]
    for child in children:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    while children and time.monotonic() < deadline:
        children = [c for c in children if Path(f"/proc/{c}").exists()]
        time.sleep(0.01)
