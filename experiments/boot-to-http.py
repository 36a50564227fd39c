#!/usr/bin/env python3
# /// chronicle
# title = "Boot to HTTP: until a tiny web server inside answers on 127.0.0.1"
# tags = ["boot", "http", "microvm", "incus"]
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
"""The deployer's "app is up": t0 → busybox httpd inside answers ``GET /`` on 127.0.0.1.

- qemu microVM (directly and through ``microvm-run``): user-mode network with
  ``hostfwd=tcp:127.0.0.1:PORT-:80``; the guest loads virtio-mmio/net, sets up eth0 and
  starts httpd. t0 is the spawn.
- Incus container: a proxy device ``listen=tcp:127.0.0.1:PORT`` →
  ``connect=tcp:127.0.0.1:80``; the image's init starts httpd. t0 is the create request.

Only a real HTTP status line counts: forwarders accept connections before anything
listens inside. Firecracker and cloud-hypervisor have TAP networking only, so they are
recorded as unsupported here.
"""

from __future__ import annotations

from chronicle import lab
from chronicle.lab.subjects.lineup import boots, lineup, report_lineup

plan = lab.plan()
subjects = lineup(plan.experiment or "boot-to-http", plan.scratch, http=True)
report_lineup(subjects)

with lab.cleanup():
    for run, name, warmup, boot in boots(subjects, plan):
        assert boot.timings.http_ms is not None
        lab.emit(name, "http_ms", boot.timings.http_ms, "ms", run, warmup=warmup)
