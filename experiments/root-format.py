#!/usr/bin/env python3
# /// chronicle
# title = "Root format: a guest's microVM from ext4, from erofs, or all in its initramfs"
# tags = ["app", "microvm", "boot"]
# inputs = [
#     "src/chronicle/lab/guestroots.py",
#     "src/chronicle/lab/subjects/*.py",
#     "src/chronicle/lab/probes.py",
#     "src/chronicle/lab/guestboot.py",
#     "src/chronicle/lab/guestbuild.py",
#     "src/chronicle/lab/derived.py",
# ]
# timeout = 2400
# repeat = 3
# warmup = 1
# [params]
# guests = ["static-nginx", "rails-sqlite"]
# formats = ["ext4", "erofs", "initramfs"]
# boot_timeout_s = 240
# settle_s = 3
# ///
"""Which root should a guest's microVM boot from? The same tree (``chronicle lab guest
build NAME``), three ways, each booted as ``boot-to-app`` boots the qemu microVM (same
kernel, CPU, network; see ``chronicle.lab.guestroots``):

- ``ext4``: the build's ``root.ext4`` on virtio-blk, writable (qemu's ``snapshot=on``);
- ``erofs``: ``mkfs.erofs`` of the tree on virtio-blk, read-only, with a tmpfs overlay
  on top set up in the initramfs;
- ``initramfs``: the tree as the initramfs, no disk, with the memory the others get
  plus twice the archive (``memory_mib`` in the subject's facts).

Subjects ``<format>/<guest>``, interleaved. Metrics: ``app_ms`` (spawn → the URL's first
200 on 127.0.0.1) and its phases (``kernel_to_init_ms``, ``init_to_app_ms``,
``outside_ms``) as in ``boot-to-app``; after ``settle_s`` idle, ``pss_mib``/``rss_mib``
of qemu and ``disk_mib`` (kernel, initrd and root, as ``boot-to-app``); ``root_mib``,
the root format's own file (the ext4 disk, the erofs image, the cpio archive), and
``root_allocated_mib``, the blocks it takes on the host (the ext4 image is sparse).
Each subject's facts give the tree's size (``tree_mib``) and the VM's ``memory_mib``.

The VM is TCG on a host without hardware KVM: a real boot, not a microVM's speed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from chronicle import lab
from chronicle.errors import LabError
from chronicle.lab import guestdef, guestroots, host
from chronicle.lab.guestbuild import build_key, read_build
from chronicle.lab.subjects.base import Unsupported
from chronicle.lab.subjects.lineup import Lineup, boots, emit_boot
from chronicle.lab.subjects.qemu import QemuMicrovm, choose_accel
from chronicle.paths import lab_dir

plan = lab.plan()
root = Path(os.environ.get("CHRONICLE_ROOT", "."))
try:
    QemuMicrovm.check()
except Unsupported as exc:
    raise SystemExit(f"qemu cannot boot a microVM here: {exc.reason}") from None
accel, tsc = choose_accel(host.kvm_kind()), host.tsc_khz()
formats = plan.params.get("formats", list(guestroots.FORMATS))
if unknown := [f for f in formats if f not in guestroots.FORMATS]:
    raise SystemExit(f"params.formats: unknown {unknown}; known: {list(guestroots.FORMATS)}")
factories, root_bytes = {}, {}
for guest in plan.params.get("guests", ["static-nginx"]):
    definition = guestdef.find(root, guest)
    build = read_build(lab_dir(root), guest)
    if build is None or build.key != build_key(definition):
        raise SystemExit(f"guest {guest} is not built from its current definition: run "
                         f"`chronicle lab guest build {guest}`")
    try:
        roots = guestroots.derive(definition, build,
                                  say=lambda line: print(line, file=sys.stderr))
    except LabError as exc:
        raise SystemExit(str(exc)) from None
    for name in formats:
        fmt = guestroots.root_format(name, build, roots)
        subject = f"{name}/{guest}"
        root_bytes[subject] = fmt.root_bytes()
        lab.report_subject(subject, tree_mib=round(roots.tree_bytes / 2**20, 1))
        factories[subject] = (lambda d=definition, b=build, f=fmt:
                              guestroots.FormatMicrovm(d, b, f, accel, tsc))
settle = 0.5 if plan.quick else float(plan.params.get("settle_s", 3))

with lab.cleanup():
    for run, name, warmup, boot in boots(Lineup(factories), plan, measure=True,
                                         settle=settle, timeout=240):
        emit_boot(name, run, warmup, boot)
        size, allocated = root_bytes[name]
        lab.emit(name, "root_mib", size / 2**20, "MiB", run, warmup=warmup)
        lab.emit(name, "root_allocated_mib", allocated / 2**20, "MiB", run, warmup=warmup)
