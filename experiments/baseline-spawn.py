#!/usr/bin/env python3
# /// chronicle
# title = "Host baseline: spawn and reap a minimal process"
# tags = ["baseline"]
# repeat = 30
# warmup = 3
# timeout = 120
# params = { program = "/bin/true" }
# ///
"""The floor under any boot: how long the host takes to start a process and reap it.

Two ways of starting the same program, interleaved so drift lands on both alike:
``subprocess.run`` (what most harness code does) and a bare ``os.posix_spawn`` +
``waitpid`` (the least a launcher can do). A VM or container cannot start faster than
this; everything above it is the hypervisor's or the runtime's.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time

from chronicle import lab

plan = lab.plan()
program = plan.params.get("program", "/bin/true")


def via_subprocess() -> dict[str, tuple[float, str]]:
    t0 = time.perf_counter_ns()
    subprocess.run([program], check=True)
    return {"spawn_reap_ms": ((time.perf_counter_ns() - t0) / 1e6, "ms")}


def via_posix_spawn() -> dict[str, tuple[float, str]]:
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(program, [program], {})
    _, status = os.waitpid(pid, 0)
    elapsed = (time.perf_counter_ns() - t0) / 1e6
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{program} failed with status {status}")
    return {"spawn_reap_ms": (elapsed, "ms")}


lab.report(baseline={"program": program, "python": platform.python_version()})
lab.measure({"subprocess": via_subprocess, "posix_spawn": via_posix_spawn}, plan=plan)
