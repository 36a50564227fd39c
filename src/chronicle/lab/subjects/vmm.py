"""The shared machinery for a VMM we spawn as a child process.

``VmmProcess`` starts the VMM in its own session, times the boot by the guest's serial
marker (and, with a port, the first HTTP answer on 127.0.0.1), measures the VMM's
processes and kills the whole group on clean-up. ``KvmVmm`` adds what Firecracker and
cloud-hypervisor share: they run only where installed and KVM is hardware.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from chronicle.lab.probes import (
    StreamWatcher,
    descendants,
    file_bytes,
    http_answers,
    process_exe,
    total_memory,
)
from chronicle.lab.subjects.base import (
    BootTimeout,
    Footprint,
    Subject,
    SubjectError,
    Timings,
    Unsupported,
)


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


class KvmVmm(VmmProcess):
    """A VMM that runs on hardware KVM only; ``binary`` is the program on PATH.

    Subclasses set ``vmm`` (the name in facts) and ``version_fact`` (the key its version
    is reported under).
    """

    vmm = ""
    version_fact = ""

    def __init__(self, argv: list[str], *, binary: str, disk_files: list[Path]):
        self.binary = binary
        super().__init__(argv, disk_files=disk_files)

    @classmethod
    def check(cls, binary: str | None = None, *, http: bool = False,
              kvm_kind: str | None = None) -> None:
        check_kvm_vmm(binary or cls.vmm, http=http, kvm_kind=kvm_kind)

    def facts(self) -> dict[str, Any]:
        from chronicle.lab import host

        return {"accelerator": "kvm", "kvm_kind": host.kvm_kind(), "vmm": self.vmm,
                self.version_fact: host.tool_version(self.binary)}
