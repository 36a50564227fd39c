#!/usr/bin/env python3
# /// chronicle
# title = "Boot to init: qemu microVM, microvm.nix runner and Incus container"
# tags = ["boot", "microvm", "incus"]
# inputs = [
#     "src/chronicle/lab/subjects/*.py",
#     "src/chronicle/lab/probes.py",
#     "src/chronicle/lab/initramfs.py",
# ]
# timeout = 900
# repeat = 20
# warmup = 2
# params = { boot_timeout_s = 90 }
# ///
"""How long until the guest runs our code, per subject, interleaved.

- VMs (qemu microVM, the same qemu through a microvm.nix-style ``microvm-run``,
  Firecracker and cloud-hypervisor where installed): spawn → the init's marker line on
  the serial console (``boot_ms``); the guest's own uptime in that line
  (``guest_uptime_ms``, kernel to init); the difference (``host_overhead_ms``, VMM and
  firmware).
- Incus: create request → status Running (``running_ms``) → first successful
  ``exec true`` (``boot_ms``).

Subjects this host cannot run are recorded as unsupported with the reason. Under TCG
(no hardware KVM) the VM figures are emulated boots, and the provenance says so. An
emulated guest's clock can also jump under host load: a guest uptime longer than the
wall-clock boot is impossible, so such a run keeps its ``boot_ms`` but its uptime is
not used (it is kept in that sample's ``meta`` as ``guest_uptime_rejected_ms``).
"""

from __future__ import annotations

from chronicle import lab
from chronicle.lab.subjects.lineup import boots, lineup, report_lineup

plan = lab.plan()
subjects = lineup(plan.experiment or "boot-to-init", plan.scratch)
report_lineup(subjects)

with lab.cleanup():
    for run, name, warmup, boot in boots(subjects, plan):
        metrics = boot.timings.metrics()
        meta = None
        uptime = metrics.get("guest_uptime_ms")
        if uptime is not None and uptime > metrics["boot_ms"]:
            meta = {"guest_uptime_rejected_ms": uptime}
            del metrics["guest_uptime_ms"], metrics["host_overhead_ms"]
        for metric, value in metrics.items():
            lab.emit(name, metric, value, "ms", run, warmup=warmup,
                     meta=meta if metric == "boot_ms" else None)
