#!/usr/bin/env python3
# /// chronicle
# title = "Density: how many instances of a real app fit in a memory budget"
# tags = ["app", "density", "footprint", "microvm", "incus"]
# inputs = [
#     "src/chronicle/lab/subjects/*.py",
#     "src/chronicle/lab/probes.py",
#     "src/chronicle/lab/guestboot.py",
#     "src/chronicle/lab/guestbuild.py",
#     "src/chronicle/lab/density.py",
# ]
# timeout = 3600
# repeat = 1
# warmup = 0
# [params]
# guest = "rails-sqlite"
# budget_mib = 4096
# max_instances = 64
# boot_timeout_s = 900
# settle_s = 3
# ///
"""Packing one guest onto one host: k = 1, 2, 4, … instances of ``params.guest`` at
once, as qemu microVMs and as Incus containers (subject ``<way>/<guest>``), doubling k
until the next step's predicted memory would pass ``budget_mib`` (or ``max_instances``,
or half of the host's available memory). Per step, with the step's ``run`` index and
``instances`` = k (the x of a line chart): ``total_pss_mib``, ``total_rss_mib``,
``total_cgroup_mib`` (containers), ``marginal_pss_mib`` and ``all_answer_ms``, as
``chronicle.lab.density`` defines them. Each subject's facts carry the budget, the
largest k measured and why the sweep stopped: the budget, or a step in which an
instance died before answering (e.g. a container whose systemd found no inotify
instance left: all unprivileged containers share the host's
``fs.inotify.max_user_instances``, recorded in the provenance).

Steps alternate between the subjects (k = 1 of each, then k = 2 of each, …), and every
instance of a step is removed before the next starts. The VM side is TCG here: k
emulated guests share this host's cores, so ``all_answer_ms`` grows with k far more
than under KVM. ``--quick`` stops at k = 2 whatever the budget.
"""

from __future__ import annotations

import os
from pathlib import Path

from chronicle import lab
from chronicle.lab.density import (
    MIB,
    available_memory,
    inotify_instances,
    marginal,
    next_count,
    run_step,
)
from chronicle.lab.subjects.base import SubjectError
from chronicle.lab.subjects.guests import guest_subjects
from chronicle.paths import lab_dir

plan = lab.plan()
root = Path(os.environ.get("CHRONICLE_ROOT", ".")).resolve()
experiment = plan.experiment or "density"
guest = plan.params.get("guest", "static-nginx")
made, unsupported = guest_subjects(experiment, root, lab_dir(root), guest)
for way, reason in unsupported.items():
    lab.report_subject(f"{way}/{guest}", status="unsupported", reason=reason)
if not made:
    raise SystemExit(f"{guest} cannot boot on this host")
factories = {f"{way}/{guest}": make for way, make in made.items()}
budget_mib = int(plan.params.get("budget_mib", 4096))
max_instances = int(plan.params.get("max_instances", 64))
if plan.quick:
    max_instances = min(max_instances, 2)
timeout = float(plan.params.get("boot_timeout_s", 900))
settle = 0.5 if plan.quick else float(plan.params.get("settle_s", 3))

lab.report(inotify_max_user_instances=inotify_instances())
with lab.cleanup():
    for sweep in range(plan.repeat):
        steps: dict[str, list] = {name: [] for name in factories}
        going = dict.fromkeys(factories, 1)
        stopped: dict[str, str] = {}
        rounds = 0
        while going:
            for _, name, _ in lab.schedule(sorted(going), 1, 0, plan.seed + rounds):
                try:
                    step = run_step(factories[name], going[name], timeout, settle)
                except SubjectError as exc:
                    if not steps[name]:
                        raise  # not even one instance: nothing measured, a failed run
                    stopped[name] = f"{going[name]} instances failed: {exc.message}"
                    del going[name]
                    continue
                steps[name].append(step)
                run = sweep * max_instances + len(steps[name]) - 1
                for metric, (value, unit) in step.metrics(marginal(steps[name])).items():
                    lab.emit(name, metric, value, unit, run)
                wanted, why = next_count(steps[name], budget_mib * MIB, max_instances,
                                         available_memory())
                if wanted is None:
                    stopped[name] = why
                    del going[name]
                else:
                    going[name] = wanted
            rounds += 1
        for name, done in steps.items():
            lab.report_subject(name, **done[-1].facts, budget_mib=budget_mib,
                               largest_k=done[-1].instances, stopped=stopped[name])
