"""The microvm.nix runner subject: a `microvm-run` script that execs (or forks) our qemu."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from chronicle.lab.subjects import SubjectError, Unsupported
from chronicle.lab.subjects.qemu import host_config, qemu_command
from chronicle.lab.subjects.runner import MicrovmRunner, accelerator_of, write_runner


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for a reaper (this host's PID 1 may
    not reap orphans, so a forked VMM whose shell died can linger as one)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_runner_script_has_the_declared_runner_shape(tmp_path):
    argv = ["qemu-system-x86_64", "-append", "console=ttyS0 quiet"]
    script = write_runner(tmp_path / "pkg" / "bin" / "microvm-run", argv)
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/bin/sh" and "set -eu" in lines
    assert shlex.split(lines[-1]) == ["exec", *argv]
    assert os.access(script, os.X_OK)


def test_missing_runner_is_unsupported(tmp_path):
    with pytest.raises(Unsupported, match="no microvm-run script"):
        MicrovmRunner(tmp_path / "nothing", disk_files=[])


def test_accelerator_is_read_from_the_hypervisor_command_line():
    assert accelerator_of(["qemu-system-x86_64", "-accel", "tcg"]) == "tcg"
    assert accelerator_of(["qemu-system-x86_64", "-M", "microvm,accel=kvm"]) == "kvm"
    assert accelerator_of(["qemu-system-x86_64", "-enable-kvm"]) == "kvm"
    assert accelerator_of(["cloud-hypervisor", "--kernel", "k"]) == "kvm"


def test_runner_package_boots_and_the_exec_d_qemu_is_measured(qemu_guest, tmp_path):
    config = host_config(qemu_guest.kernel.resolve(), qemu_guest.initrd.resolve())
    write_runner(tmp_path / "pkg" / "bin" / "microvm-run", qemu_command(config))
    with MicrovmRunner(tmp_path / "pkg", disk_files=[qemu_guest.kernel, qemu_guest.initrd]) as vm:
        timings = vm.wait_booted(60)
        footprint = vm.measure()
        script_pid = vm.proc.pid
    assert vm.hypervisor == script_pid  # exec keeps the pid
    assert 0 < timings.guest_uptime_ms < timings.boot_ms
    assert footprint.pss > 16 * 2**20 and footprint.detail["vmm"] == "qemu-system-x86_64"
    assert vm.facts()["accelerator"] == config.accel
    assert _gone(script_pid)


def test_runner_that_forks_its_hypervisor_is_followed_and_cleaned_up(qemu_guest, tmp_path):
    config = host_config(qemu_guest.kernel.resolve(), qemu_guest.initrd.resolve())
    script = tmp_path / "microvm-run"
    script.write_text(f"#!/bin/sh\nset -eu\n{shlex.join(qemu_command(config))} &\nwait\n")
    script.chmod(0o755)
    with MicrovmRunner(script, disk_files=[qemu_guest.kernel, qemu_guest.initrd]) as vm:
        vm.wait_booted(60)
        vm.measure()
        child = vm.hypervisor
    assert child is not None and child != vm.script
    assert _gone(child)


def test_runner_that_execs_no_hypervisor_is_an_error(tmp_path):
    script = tmp_path / "microvm-run"
    script.write_text("#!/bin/sh\necho CHRONICLE-BOOTED uptime=0.5\nexec sleep 30\n")
    script.chmod(0o755)
    with MicrovmRunner(script, disk_files=[], find_timeout=0.5) as vm:
        with pytest.raises(SubjectError, match="started no known hypervisor"):
            vm.wait_booted(10)
