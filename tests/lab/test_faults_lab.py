"""Fault injection: ``lab run`` killed at random moments leaves nothing behind for long.

The experiment (written here, in tmp_path) starts a helper that calls ``setsid``, an
Incus container and a real qemu guest, then holds while a flag file exists. Each trial
SIGKILLs ``lab run`` at a seeded random moment; the next ``lab doctor`` or ``lab run``
must then leave no process of the experiment (qemu, helper, script), no Incus instance
of it, no record of the run, and the stored results as they were (a killed run never
stores one). Then Ctrl-C and a timeout, where the helper must not survive either.
"""

from __future__ import annotations

import random
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chronicle.lab.procgroup import alive
from chronicle.lab.subjects.base import made_by
from tests.support import incus_client

from .conftest import cli_env

TRIALS = 10
SEED = 13

EXPERIMENT = """
import os, subprocess, sys, time
from pathlib import Path

os.environ["CHRONICLE_FAULT_MARKER"] = "{marker}"  # inherited by all it starts
from chronicle import lab
from chronicle.lab import host
from chronicle.lab.subjects.incus import IncusInstance
from chronicle.lab.subjects.qemu import QemuMicrovm, host_config

plan = lab.plan()
subprocess.Popen(["setsid", sys.executable, "-c", "import time; time.sleep(1000)",
                  "{marker}"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
with IncusInstance(host.incus_client(), experiment=plan.experiment) as box:
    box.wait_booted(30)
    with QemuMicrovm(host_config(Path("{kernel}"), Path("{initrd}"))) as vm:
        timings = vm.wait_booted(60)
        lab.emit("qemu-microvm", "boot_ms", timings.boot_ms, "ms", 0)
        while Path("{hold}").exists():
            time.sleep(0.05)
"""


class Lab:
    """The site, its experiment and what counts as the experiment's own."""

    def __init__(self, site, qemu_guest, tmp_path: Path, timeout: int = 120):
        self.site = site
        self.client = incus_client()
        self.name = f"faults-{secrets.token_hex(3)}"
        self.marker = f"chronicle-fault-marker-{secrets.token_hex(6)}"
        self.hold = tmp_path / "hold"
        self.hold.touch()
        site.script(self.name, EXPERIMENT.format(
            marker=self.marker, kernel=qemu_guest.kernel, initrd=qemu_guest.initrd,
            hold=self.hold), block=f'title = "faults"\ntimeout = {timeout}')

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "chronicle", "lab", *args, "--root", str(self.site.root)]

    def start_run(self) -> subprocess.Popen:
        return subprocess.Popen(self.command("run", self.name, "--quick", "--force"),
                                env=cli_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)

    def finish_run(self) -> subprocess.CompletedProcess:
        """A whole run (the flag lifted, so it ends after one boot)."""
        self.hold.unlink()
        try:
            return subprocess.run(self.command("run", self.name, "--quick", "--force"),
                                  env=cli_env(), capture_output=True, text=True, timeout=180)
        finally:
            self.hold.touch()

    def processes(self) -> list[str]:
        """Our running processes (qemu, helper, script): they carry the marker."""
        needle = self.marker.encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or not alive(int(entry.name)):
                continue
            try:
                seen = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if needle in seen:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")[:80]
                found.append(f"{entry.name}: {cmd.decode(errors='replace')}")
        return found

    def qemus(self) -> list[str]:
        return [p for p in self.processes() if "qemu-system" in p]

    def instances(self) -> list[str]:
        return [i.name for i in self.client.instances.all() if made_by(i.name, self.name)]

    def results(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.site.results)): p.read_bytes()
                for p in sorted(self.site.results.rglob("*")) if p.is_file()}

    def records(self) -> list[Path]:
        folder = self.site.root / ".chronicle" / "lab" / "runs"
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def assert_nothing_left(self) -> None:
        assert self.processes() == []
        assert self.instances() == []
        assert self.records() == []

    def wait_for(self, proc: subprocess.Popen, test, what: str, wait: float = 90) -> None:
        deadline = time.monotonic() + wait
        while not test():
            assert proc.poll() is None, f"lab run ended before {what}: {proc.stderr.read()}"
            assert time.monotonic() < deadline, f"no {what} after {wait} s"
            time.sleep(0.05)


@pytest.fixture
def lab(site, qemu_guest, tmp_path):
    made = Lab(site, qemu_guest, tmp_path)
    yield made
    made.hold.unlink(missing_ok=True)
    subprocess.run(made.command("doctor"), env=cli_env(), capture_output=True, timeout=120)


def test_lab_run_killed_at_random_moments_leaves_nothing_behind(lab):
    first = lab.finish_run()
    assert first.returncode == 0, first.stderr
    assert lab.results(), "the first run stored no result"
    rng = random.Random(SEED)
    survived = 0
    for trial in range(TRIALS):
        stored = lab.results()
        proc = lab.start_run()
        time.sleep(rng.uniform(0.3, 6.0))
        assert proc.poll() is None, "the run ended before it was killed"
        proc.kill()
        proc.wait()
        proc.stderr.close()
        left = lab.processes()
        survived += bool(left)
        assert lab.results() == stored, f"trial {trial}: the killed run changed the results"
        if trial % 2:
            sweep = subprocess.run(lab.command("doctor"), env=cli_env(), capture_output=True,
                                   text=True, timeout=120)
            assert lab.results() == stored
        else:
            sweep = lab.finish_run()
            after = lab.results()
            assert {k: after[k] for k in stored} == stored, f"trial {trial}: a result changed"
            assert len(after) == len(stored) + 1
        assert sweep.returncode == 0, sweep.stderr
        if left:
            assert "swept run" in sweep.stderr, (trial, left, sweep.stderr)
        lab.assert_nothing_left()
    # SIGKILL of lab run alone ends none of these: the test has shown the sweep at work.
    assert survived >= TRIALS // 2


def test_ctrl_c_leaves_no_helper_guest_or_instance(lab):
    proc = lab.start_run()
    lab.wait_for(proc, lambda: lab.qemus() and any("time.sleep(1000)" in p
                                                    for p in lab.processes()),
                 "a qemu guest and the helper")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()
    assert "cancelled" in stderr.decode()
    lab.assert_nothing_left()


def test_timeout_leaves_no_helper_guest_or_instance(site, qemu_guest, tmp_path):
    lab = Lab(site, qemu_guest, tmp_path, timeout=8)
    try:
        started = time.monotonic()
        done = subprocess.run(lab.command("run", lab.name, "--quick"), env=cli_env(),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1 and "timed out after 8 s" in done.stderr, done.stderr
        assert time.monotonic() - started < 60
        lab.assert_nothing_left()
    finally:
        lab.hold.unlink(missing_ok=True)

