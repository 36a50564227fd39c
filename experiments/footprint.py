#!/usr/bin/env python3
# /// chronicle
# title = "Footprint: host memory and disk of each subject, idle after boot"
# tags = ["footprint", "microvm", "incus"]
# inputs = [
#     "src/chronicle/lab/subjects/*.py",
#     "src/chronicle/lab/probes.py",
#     "src/chronicle/lab/initramfs.py",
# ]
# timeout = 900
# repeat = 10
# warmup = 1
# params = { boot_timeout_s = 90, settle_s = 3 }
# ///
"""What each subject costs the host once booted and idle (after ``settle_s`` seconds).

- ``pss_mib``/``rss_mib``: summed over the host processes that exist for the subject,
  from ``/proc/<pid>/smaps_rollup`` — the VMM process for a VM; the container's
  processes plus its ``[lxc monitor]`` for Incus (the monitor's share is in ``meta``).
  Compare PSS, not RSS: PSS shares common pages out fairly.
- ``cgroup_mib``/``cgroup_peak_mib`` (Incus only): the cgroup's usage and peak. They
  include page cache, so they are not comparable with PSS.
- ``disk_mib``: what the subject boots from — kernel and initramfs for a VM, the root
  volume's usage for a container (a btrfs clone of the image); ``image_mib`` is the
  Incus image itself.
"""

from __future__ import annotations

from chronicle import lab
from chronicle.lab.subjects.lineup import boots, lineup, report_lineup

plan = lab.plan()
subjects = lineup(plan.experiment or "footprint", plan.scratch)
report_lineup(subjects)
settle = 0.5 if plan.quick else float(plan.params.get("settle_s", 3))

with lab.cleanup():
    for run, name, warmup, boot in boots(subjects, plan, measure=True, settle=settle):
        assert boot.footprint is not None
        meta = {k: v for k, v in boot.footprint.detail.items() if k.endswith("_mib")}
        for metric, value in boot.footprint.metrics().items():
            lab.emit(name, metric, value, "MiB", run, warmup=warmup, meta=meta or None)
