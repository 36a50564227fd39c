#!/usr/bin/env python3
# /// chronicle
# title = "Boot to app: a real Debian guest as a microVM and as a container"
# tags = ["app", "boot", "footprint", "microvm", "incus"]
# inputs = [
#     "src/chronicle/lab/subjects/*.py",
#     "src/chronicle/lab/probes.py",
#     "src/chronicle/lab/guestboot.py",
#     "src/chronicle/lab/guestbuild.py",
#     "src/chronicle/lab/derived.py",
#     "src/chronicle/lab/guestvm.py",
# ]
# timeout = 1800
# repeat = 5
# warmup = 1
# params = { guests = ["static-nginx", "rails-sqlite"], boot_timeout_s = 180, settle_s = 3 }
# ///
"""A deployer's question: my app, in a microVM or in an Incus container — which serves
its first request sooner, and what does each cost the host?

Each guest of ``params.guests`` (built by ``chronicle lab guest build NAME``: one Debian
tree, one app, systemd as init) boots as a qemu microVM (spawned, and through a
``microvm-run`` runner), as an Incus container, as an Incus VM where the host can run
one (else the result says why not), and as ``qemu-uefi``: the Incus VM image's disk on
the machine Incus builds (q35, OVMF, systemd-boot) started by qemu itself — what a full
VM costs against the microVM, never reported as an Incus VM. All interleaved. Metrics,
per subject ``<way>/<guest>``:

- ``app_ms``: spawn (VM) or create request (container) → the first 200 for the guest's
  URL on 127.0.0.1 (``hostfwd`` / a proxy device);
- its phases, from the guest's systemd: ``kernel_to_init_ms`` (VM) or
  ``create_to_init_ms`` (container), ``init_to_app_ms`` (systemd up to the app's unit
  active), and ``outside_ms`` (the rest: qemu, firmware and boot loader for a VM, and
  for all what follows the unit's activation — for puma, a ``Type=simple`` unit, Rails
  loading);
- footprint after ``settle_s`` idle: ``pss_mib``/``rss_mib`` of the host processes,
  ``disk_mib`` (microVM: kernel, initrd and the root disk image; UEFI VM: its qcow2
  disk; container: the root volume's usage), ``cgroup_mib`` for the container.

The VM side is TCG on a host without hardware KVM: a real boot, not a microVM's speed,
and qemu's PSS then includes TCG's translation cache, which a KVM guest does not have.
"""

from __future__ import annotations

import os
from pathlib import Path

from chronicle import lab
from chronicle.lab.subjects.guests import guest_subjects
from chronicle.lab.subjects.lineup import Lineup, boots, emit_boot
from chronicle.paths import lab_dir

plan = lab.plan()
root = Path(os.environ.get("CHRONICLE_ROOT", "."))
experiment = plan.experiment or "boot-to-app"
factories = {}
for guest in plan.params.get("guests", ["static-nginx"]):
    made, unsupported = guest_subjects(experiment, root, lab_dir(root), guest, uefi=True)
    factories.update({f"{way}/{guest}": make for way, make in made.items()})
    for way, reason in unsupported.items():
        lab.report_subject(f"{way}/{guest}", status="unsupported", reason=reason)
if not factories:
    raise SystemExit("no guest can boot on this host")
settle = 0.5 if plan.quick else float(plan.params.get("settle_s", 3))

with lab.cleanup():
    for run, name, warmup, boot in boots(Lineup(factories), plan, measure=True,
                                         settle=settle, timeout=180):
        emit_boot(name, run, warmup, boot)
