#!/usr/bin/env python3
# /// chronicle
# title = "Footprint of a real app: idle after its first answer, and after a burst"
# tags = ["app", "footprint", "microvm", "incus"]
# inputs = [
#     "src/chronicle/lab/subjects/*.py",
#     "src/chronicle/lab/probes.py",
#     "src/chronicle/lab/guestboot.py",
#     "src/chronicle/lab/guestbuild.py",
#     "src/chronicle/lab/load.py",
# ]
# timeout = 1800
# repeat = 3
# warmup = 1
# [params]
# guests = ["static-nginx", "rails-sqlite"]
# boot_timeout_s = 180
# settle_s = 3
# requests = 200
# ///
"""What a guest's app costs the host once it serves: each guest of ``params.guests``
as a qemu microVM and as an Incus container (subject ``<way>/<guest>``), measured twice
per boot:

- idle, ``settle_s`` after the app's first 200: ``pss_mib``/``rss_mib`` of the host
  processes (qemu; the container's processes and its ``[lxc monitor]``), ``cgroup_mib``
  for the container (it includes page cache, so compare it with nothing but itself),
  ``disk_mib`` (VM: kernel, initrd and root disk image; container: its root volume);
- after a burst of ``requests`` GETs of the app's URL on 127.0.0.1, one at a time
  (``chronicle.lab.load``), and ``settle_s`` more: the same figures as ``burst_*``, and
  ``burst_ms``, how long the burst took.

The VM's disk image is opened with qemu's ``snapshot=on``: what the app writes goes to
qemu's own temporary file, so ``burst_disk_mib`` of a VM is its image as before; a
container writes to its root volume, which shows. The VM side is TCG here (no hardware
KVM): its requests run emulated and qemu's PSS includes TCG's translation cache.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from chronicle import lab
from chronicle.lab.load import burst
from chronicle.lab.subjects.guests import guest_subjects
from chronicle.paths import lab_dir

plan = lab.plan()
root = Path(os.environ.get("CHRONICLE_ROOT", ".")).resolve()
experiment = plan.experiment or "footprint-app"
factories = {}
for guest in plan.params.get("guests", ["static-nginx"]):
    made, unsupported = guest_subjects(experiment, root, lab_dir(root), guest)
    factories.update({f"{way}/{guest}": make for way, make in made.items()})
    for way, reason in unsupported.items():
        lab.report_subject(f"{way}/{guest}", status="unsupported", reason=reason)
if not factories:
    raise SystemExit("no guest can boot on this host")
timeout = float(plan.params.get("boot_timeout_s", 180))
settle = 0.5 if plan.quick else float(plan.params.get("settle_s", 3))
requests = 20 if plan.quick else int(plan.params.get("requests", 200))

reported = set()
with lab.cleanup():
    for run, name, warmup in lab.schedule(sorted(factories), plan.repeat, plan.warmup,
                                          plan.seed):
        with factories[name]() as subject:
            subject.wait_booted(timeout)
            time.sleep(settle)
            idle = subject.measure()
            sent = burst(subject.http_port, subject.definition.app.url, requests)
            time.sleep(settle)
            loaded = subject.measure()
            facts = subject.facts()
        if name not in reported:
            lab.report_subject(name, requests=requests, **facts)
            reported.add(name)
        for metric, value in idle.metrics().items():
            lab.emit(name, metric, value, "MiB", run, warmup=warmup)
        for metric, value in loaded.metrics().items():
            if metric != "image_mib":
                lab.emit(name, f"burst_{metric}", value, "MiB", run, warmup=warmup)
        lab.emit(name, "burst_ms", sent.seconds * 1000.0, "ms", run, warmup=warmup,
                 meta={"requests": sent.requests, "connections": sent.connections})
