"""Firecracker, configured from its documentation: ``--no-api --config-file``.

The config file is the JSON body of the API's pre-boot calls, keyed by resource:
``boot-source`` (``kernel_image_path`` — an uncompressed ELF on x86_64 —,
``initrd_path``, ``boot_args``), ``drives``, ``machine-config`` (``vcpu_count``,
``mem_size_mib``) and ``network-interfaces``. With ``--boot-timer`` Firecracker adds its
boot-timer device: a guest that writes the byte 123 to it makes the VMM log
``Guest-boot-time = <us> us ...``, timed from the start of the VM. Our guests' serial
marker stays the common definition of "booted"; the boot-timer figure is added when a
guest fires it.

Firecracker needs hardware KVM and has only TAP networking (no user-mode forwarding to
127.0.0.1), so it runs where the binary is on PATH and KVM is hardware, and only for
``boot-to-init``; everywhere else it is ``Unsupported`` with the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from chronicle.lab.subjects.vmm import KvmVmm

FIRECRACKER = "firecracker"
# Firecracker's documented guest defaults: no PCI bus, ends on reboot, keyboard probing off.
BOOT_ARGS = (
    "console=ttyS0 reboot=k panic=1 pci=off quiet "
    "i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd"
)
BOOT_TIMER = re.compile(rb"Guest-boot-time\s*=\s*(\d+)\s*us")


def firecracker_config(
    kernel: Path,
    initrd: Path,
    *,
    cmdline: str = "",
    vcpus: int = 1,
    memory_mib: int = 256,
    drives: tuple[Path, ...] = (),
    tap: str | None = None,
) -> dict[str, Any]:
    """The ``--config-file`` document for one microVM."""
    config: dict[str, Any] = {
        "boot-source": {
            "kernel_image_path": str(kernel),
            "initrd_path": str(initrd),
            "boot_args": f"{BOOT_ARGS} {cmdline}".strip(),
        },
        "drives": [
            {
                "drive_id": f"disk{i}",
                "path_on_host": str(path),
                "is_root_device": False,
                "is_read_only": True,
            }
            for i, path in enumerate(drives)
        ],
        "machine-config": {"vcpu_count": vcpus, "mem_size_mib": memory_mib},
        "network-interfaces": [],
    }
    if tap:
        config["network-interfaces"].append(
            {"iface_id": "eth0", "host_dev_name": tap, "guest_mac": "06:00:ac:10:00:02"}
        )
    return config


def firecracker_command(config_file: Path, binary: str = FIRECRACKER) -> list[str]:
    # Info level: the boot-timer line is logged at info.
    return [binary, "--no-api", "--config-file", str(config_file), "--boot-timer",
            "--level", "Info"]


class Firecracker(KvmVmm):
    name = vmm = "firecracker"
    version_fact = "firecracker_version"
    boot_timer = BOOT_TIMER

    def __init__(self, kernel: Path, initrd: Path, scratch: Path, *, cmdline: str = "",
                 memory_mib: int = 256, binary: str = FIRECRACKER):
        config = firecracker_config(kernel, initrd, cmdline=cmdline, memory_mib=memory_mib)
        config_file = scratch / "firecracker.json"
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(json.dumps(config, indent=2) + "\n")
        super().__init__(firecracker_command(config_file, binary), binary=binary,
                         disk_files=[kernel, initrd])
