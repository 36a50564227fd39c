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

from chronicle.lab.subjects.vmm import KvmVmm

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


class CloudHypervisor(KvmVmm):
    name = vmm = "cloud-hypervisor"
    version_fact = "cloud_hypervisor_version"

    def __init__(self, kernel: Path, initrd: Path, *, cmdline: str = "",
                 memory_mib: int = 256, binary: str = CLOUD_HYPERVISOR):
        argv = cloud_hypervisor_command(kernel, initrd, cmdline=cmdline,
                                        memory_mib=memory_mib, binary=binary)
        super().__init__(argv, binary=binary, disk_files=[kernel, initrd])
