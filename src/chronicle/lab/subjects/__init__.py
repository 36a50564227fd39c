"""What the lab boots and measures, behind one interface (see ``base.Subject``).

- ``qemu.QemuMicrovm``: qemu ``-M microvm`` with a PVH kernel and initramfs (KVM or TCG).
- ``runner.MicrovmRunner``: a microvm.nix ``microvm-run`` script and the VMM it execs.
- ``firecracker.Firecracker``, ``cloud_hypervisor.CloudHypervisor``: run when installed
  on a hardware-KVM host, ``Unsupported`` elsewhere.
- ``vmm.VmmProcess``: what every spawned VMM above shares (spawn, serial marker, kill).
- ``incus.IncusInstance``: an Incus container or VM through pylxd.
- ``lineup.lineup()``: which of these this host can run (the others with a reason), and
  ``lineup.boot_once()``, one repetition, and ``lineup.boots()``, the whole schedule, as
  the experiments in ``experiments/`` use them.

Modules are imported by name so that an experiment pays only for what it boots
(pylxd is slow to import).
"""

from chronicle.lab.subjects.base import (
    BootTimeout,
    Footprint,
    Subject,
    SubjectError,
    Terminated,
    Timings,
    Unsupported,
    unique_name,
)

__all__ = [
    "BootTimeout",
    "Footprint",
    "Subject",
    "SubjectError",
    "Terminated",
    "Timings",
    "Unsupported",
    "unique_name",
]
