"""Facts about the host the lab runs on, read without changing anything.

Contract (subjects, doctor and provenance code against this):

- ``kvm_kind() -> "hw" | "pvm" | "none"``: hardware VMX/SVM KVM, PVM (software
  pagetable virtualisation: a ``/dev/kvm`` on which a stock guest kernel cannot boot, so
  VMs must use TCG), or no ``/dev/kvm`` at all.
- ``accelerator() -> "kvm" | "tcg"``: what qemu should use here.
- ``tsc_khz() -> int | None``: for the guest's ``tsc_early_khz=`` (under TCG the TSC is
  never calibrated otherwise and early boot crawls).
- ``qemu_version()``, ``which(name)``, ``incus_socket()``, ``incus_client()`` (the local
  socket, or the remote API of ``lab run --incus``), ``incus_remote()``,
  ``incus_vm_support(client) -> (bool, reason)``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from chronicle.errors import LabError

INCUS_DIR = Path("/var/lib/incus")
# Extra places for tools Debian keeps off PATH (incusd lives in libexec).
_EXTRA_PATHS = ("/usr/libexec/incus", "/usr/lib/incus", "/usr/sbin", "/sbin")


def which(name: str) -> Path | None:
    """``name`` on PATH or in the few libexec folders Debian uses; None when absent."""
    found = shutil.which(name)
    if found is None:
        found = shutil.which(name, path=os.pathsep.join(_EXTRA_PATHS))
    return Path(found) if found else None


def _cpu_flags(cpuinfo: Path) -> set[str]:
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def kvm_kind(
    dev: Path = Path("/dev/kvm"),
    modules: Path = Path("/sys/module"),
    cpuinfo: Path = Path("/proc/cpuinfo"),
) -> str:
    """``hw``, ``pvm`` or ``none`` (see the module docstring)."""
    if not dev.exists():
        return "none"
    if (modules / "kvm_pvm").exists():
        return "pvm"
    if (modules / "kvm_intel").exists() or (modules / "kvm_amd").exists():
        return "hw"
    # Vendor module built in (so not listed): the CPU flags still tell.
    return "hw" if _cpu_flags(cpuinfo) & {"vmx", "svm"} else "pvm"


def accelerator(kind: str | None = None) -> str:
    """``kvm`` only on hardware KVM; a stock guest kernel cannot boot under PVM."""
    return "kvm" if (kind or kvm_kind()) == "hw" else "tcg"


def tsc_khz(cpuinfo: Path = Path("/proc/cpuinfo")) -> int | None:
    """The host TSC frequency in kHz, from the first ``cpu MHz`` line (None if unknown)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    found = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", text, re.MULTILINE)
    if not found:
        return None
    khz = round(float(found.group(1)) * 1000)
    return khz or None


def _version_line(argv: list[str]) -> str | None:
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=20,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (run.stdout or run.stderr).strip()
    return text.splitlines()[0].strip() if run.returncode == 0 and text else None


def qemu_version(binary: str = "qemu-system-x86_64") -> str | None:
    """``"7.2.22"`` from ``qemu-system-x86_64 --version``; None when qemu is absent."""
    path = which(binary)
    line = _version_line([str(path), "--version"]) if path else None
    if not line:
        return None
    found = re.search(r"version ([0-9][^\s]*)", line)
    return found.group(1) if found else line


def tool_version(name: str) -> str | None:
    """First line of ``name --version`` when ``name`` is on PATH (Firecracker, c-h…)."""
    path = which(name)
    return _version_line([str(path), "--version"]) if path else None


def incus_socket(incus_dir: Path = INCUS_DIR) -> Path:
    """The daemon's unix socket (``INCUS_DIR`` overrides, as for Incus itself)."""
    return Path(os.environ.get("INCUS_DIR", incus_dir)) / "unix.socket"


def incus_remote() -> Any:
    """The remote Incus API this run was pointed at (``lab run --incus HOST``), or None."""
    from chronicle.lab.incus_remote import Remote

    return Remote.from_env()


def incus_client(timeout: float = 30) -> Any:
    """A pylxd client on the Incus socket, or on the remote API of ``lab run --incus``;
    LabError when the daemon is not answering."""
    import pylxd  # slow import; only the lab needs it

    remote = incus_remote()
    if remote is not None:
        return remote.client(timeout)
    socket = incus_socket()
    if not socket.exists():
        raise LabError("Incus is not running: run `chronicle lab setup`", socket)
    try:
        return pylxd.Client(endpoint=str(socket), timeout=timeout)
    except Exception as exc:  # pylxd raises several unrelated types for "no answer"
        raise LabError(f"Incus does not answer: {exc}", socket) from exc


def incus_vm_support(client: Any) -> tuple[bool, str]:
    """Whether this daemon can run ``virtual-machine`` instances, and why not.

    The ``virtual-machines`` API extension is advertised even where VMs cannot start,
    so look at the drivers the daemon actually loaded.
    """
    env = client.host_info.get("environment", {})
    drivers = str(env.get("driver", ""))
    if "qemu" in drivers.split(" | ") or "qemu" in drivers:
        return True, f"drivers: {drivers}"
    reasons = [f"the daemon loaded no qemu driver (drivers: {drivers or 'none'})"]
    if incus_remote() is not None:  # this machine's devices say nothing of a remote's
        return False, reasons[0]
    if not Path("/dev/vhost-vsock").exists():
        reasons.append("no /dev/vhost-vsock")
    kind = kvm_kind()
    if kind != "hw":
        reasons.append(f"KVM kind is {kind}")
    return False, "; ".join(reasons)


def incus_version(client: Any) -> str:
    env = client.host_info.get("environment", {})
    return str(env.get("server_version", "unknown"))


def systemd_is_init() -> bool:
    """True when PID 1 is systemd (then the Incus units start the daemon)."""
    return Path("/run/systemd/system").is_dir()


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        for line in path.read_text().splitlines():
            if "=" in line:
                key, value = line.split("=", 1)
                values[key] = value.strip().strip('"')
    except OSError:
        pass
    return values
