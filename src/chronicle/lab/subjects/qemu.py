"""A qemu microVM: ``-M microvm``, PVH ``vmlinux`` + initramfs, serial console on stdio.

Hardware KVM when the host has it; otherwise TCG (software emulation), and the facts
say so — a TCG boot is a real VM boot and a fair test of the harness, but never a
microVM boot time. Under TCG the guest gets ``tsc_early_khz`` because the emulated TSC
is otherwise never calibrated, and the PIT and RTC stay on (without them it is slower
or panics).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronicle.lab.subjects.base import Unsupported
from chronicle.lab.subjects.vmm import VmmProcess

QEMU = "qemu-system-x86_64"

# Ends the VM instead of rebooting it, keeps the console on the first UART, and keeps
# the kernel's own chatter off it: the serial line is our clock's trigger.
BASE_CMDLINE = "console=ttyS0 reboot=t panic=-1 quiet"


@dataclass(frozen=True)
class QemuConfig:
    """Everything that decides the qemu command line."""

    kernel: Path
    initrd: Path
    accel: str = "tcg"  # "kvm" | "tcg"
    memory_mib: int = 256
    cpus: int = 1
    mode: str = "marker"  # the guest's chronicle.mode: marker | http
    idle: bool = True  # keep the guest up after the marker, so it can be measured
    http_port: int | None = None  # host port forwarded to the guest's port 80
    tsc_khz: int | None = None  # passed to the guest under TCG
    extra_cmdline: str = ""
    binary: str = QEMU


def choose_accel(kvm_kind: str) -> str:
    """KVM only on hardware virtualisation: a PVM host cannot boot a stock guest kernel."""
    return "kvm" if kvm_kind == "hw" else "tcg"


def kernel_cmdline(config: QemuConfig) -> str:
    parts = [BASE_CMDLINE, f"chronicle.mode={config.mode}"]
    if config.idle:
        parts.append("chronicle.idle=1")
    if config.accel == "tcg" and config.tsc_khz:
        parts.append(f"tsc_early_khz={config.tsc_khz}")
    if config.extra_cmdline:
        parts.append(config.extra_cmdline)
    return " ".join(parts)


def qemu_command(config: QemuConfig) -> list[str]:
    """The argv that boots ``config``; pure, so tests can read it."""
    accel = ["-accel", "kvm", "-cpu", "host"] if config.accel == "kvm" else [
        "-accel", "tcg", "-cpu", "max",
    ]
    argv = [
        config.binary,
        "-M", "microvm,x-option-roms=off",
        *accel,
        "-m", str(config.memory_mib),
        "-smp", str(config.cpus),
        "-nodefaults", "-no-user-config", "-nographic",
        "-serial", "stdio",
        "-no-reboot",
        # A guest may also end the VM by writing to this port (qemu then exits 247).
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-kernel", str(config.kernel),
        "-initrd", str(config.initrd),
        "-append", kernel_cmdline(config),
    ]
    if config.http_port is not None:
        # Forward 127.0.0.1 only: nothing outside this host can reach the guest.
        argv += [
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{config.http_port}-:80",
            "-device", "virtio-net-device,netdev=net0",
        ]
    return argv


def host_config(kernel: Path, initrd: Path, **overrides: Any) -> QemuConfig:
    """A config for this host: KVM kind decides the accelerator, TSC for TCG guests."""
    from chronicle.lab import host

    accel = choose_accel(host.kvm_kind())
    settings: dict[str, Any] = {"accel": accel, "tsc_khz": host.tsc_khz()}
    settings.update(overrides)
    return QemuConfig(kernel=kernel, initrd=initrd, **settings)


class QemuMicrovm(VmmProcess):
    """Boot ``config`` and time it; see ``VmmProcess`` for what is measured."""

    name = "qemu-microvm"

    def __init__(self, config: QemuConfig):
        self.config = config
        super().__init__(
            qemu_command(config),
            disk_files=[config.kernel, config.initrd],
            http_port=config.http_port,
        )

    @classmethod
    def check(cls, binary: str = QEMU) -> None:
        if shutil.which(binary) is None:
            raise Unsupported(f"{binary} not installed")

    def facts(self) -> dict[str, Any]:
        return qemu_facts(self.config)


def qemu_facts(config: QemuConfig) -> dict[str, Any]:
    from chronicle.lab import host

    return {
        "accelerator": config.accel,
        "kvm_kind": host.kvm_kind(),
        "vmm": "qemu",
        "qemu_version": host.qemu_version(),
        "machine": "microvm",
        "memory_mib": config.memory_mib,
        "cpus": config.cpus,
        "kernel": config.kernel.name,
    }
