"""cloud-hypervisor, configured from its documentation: everything on the command line.

``--kernel`` takes the uncompressed ``vmlinux`` (PVH entry), ``--initramfs`` the cpio,
``--cmdline`` the kernel command line; ``--cpus boot=N``, ``--memory size=<n>M``;
``--serial tty --console off`` puts the guest's first UART on our stdout and turns the
virtio console off, so the serial marker times the boot as for every other VMM.

Like Firecracker it needs hardware KVM (or MSHV) and networks through TAP devices only,
so here it is ``Unsupported`` unless the binary is on PATH and KVM is hardware.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chronicle.lab.subjects.base import VmmProcess, check_kvm_vmm

CLOUD_HYPERVISOR = "cloud-hypervisor"
CMDLINE = "console=ttyS0 reboot=k panic=1 quiet"


def cloud_hypervisor_command(
    kernel: Path,
    initrd: Path,
    *,
    cmdline: str = "",
    cpus: int = 1,
    memory_mib: int = 256,
    binary: str = CLOUD_HYPERVISOR,
) -> list[str]:
    return [
        binary,
        "--kernel", str(kernel),
        "--initramfs", str(initrd),
        "--cmdline", f"{CMDLINE} {cmdline}".strip(),
        "--cpus", f"boot={cpus}",
        "--memory", f"size={memory_mib}M",
        "--serial", "tty",
        "--console", "off",
    ]


class CloudHypervisor(VmmProcess):
    name = "cloud-hypervisor"

    def __init__(self, kernel: Path, initrd: Path, *, cmdline: str = "",
                 memory_mib: int = 256, binary: str = CLOUD_HYPERVISOR):
        self.binary = binary
        argv = cloud_hypervisor_command(kernel, initrd, cmdline=cmdline,
                                        memory_mib=memory_mib, binary=binary)
        super().__init__(argv, disk_files=[kernel, initrd])

    @classmethod
    def check(cls, binary: str = CLOUD_HYPERVISOR, *, http: bool = False,
              kvm_kind: str | None = None) -> None:
        check_kvm_vmm(binary, http=http, kvm_kind=kvm_kind)

    def facts(self) -> dict[str, Any]:
        from chronicle.lab import host

        return {"accelerator": "kvm", "kvm_kind": host.kvm_kind(), "vmm": "cloud-hypervisor",
                "cloud_hypervisor_version": host.tool_version(self.binary)}
