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
The machinery for a VMM spawned as a child process is in ``vmm``.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Self

from chronicle.errors import LabError

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
    # A real guest's boot, phase by phase (``*_ms``), where the guest reports them.
    phases: dict[str, float] = field(default_factory=dict, hash=False)

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
            **self.phases,
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

    pss: int | None  # None where the host's /proc is out of reach (a remote Incus API)
    rss: int | None
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
