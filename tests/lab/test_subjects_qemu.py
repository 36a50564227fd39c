"""The qemu microVM subject against real qemu (TCG on hosts without hardware KVM)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from chronicle.lab.probes import free_port
from chronicle.lab.procgroup import alive
from chronicle.lab.subjects import BootTimeout, SubjectError
from chronicle.lab.subjects.qemu import QemuConfig, QemuMicrovm, host_config, qemu_command


def test_command_uses_tcg_with_the_tsc_frequency_without_hardware_kvm(tmp_path):
    config = QemuConfig(tmp_path / "vmlinux", tmp_path / "initrd", accel="tcg", tsc_khz=2500000)
    argv = qemu_command(config)
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert argv[argv.index("-cpu") + 1] == "max"
    assert "tsc_early_khz=2500000" in argv[argv.index("-append") + 1]
    assert argv[argv.index("-M") + 1] == "microvm,x-option-roms=off"


def test_command_uses_kvm_and_no_tsc_hint_on_hardware_kvm(tmp_path):
    config = QemuConfig(tmp_path / "vmlinux", tmp_path / "initrd", accel="kvm", tsc_khz=2500000)
    argv = qemu_command(config)
    assert argv[argv.index("-accel") + 1] == "kvm"
    assert "tsc_early_khz" not in argv[argv.index("-append") + 1]


def test_http_forward_listens_on_loopback_only(tmp_path):
    config = QemuConfig(tmp_path / "k", tmp_path / "i", mode="http", http_port=18080)
    argv = qemu_command(config)
    assert argv[argv.index("-netdev") + 1] == "user,id=net0,hostfwd=tcp:127.0.0.1:18080-:80"
    assert "chronicle.mode=http" in argv[argv.index("-append") + 1]


def test_microvm_boots_is_measured_and_cleaned_up(qemu_guest):
    config = host_config(qemu_guest.kernel, qemu_guest.initrd)
    with QemuMicrovm(config) as vm:
        timings = vm.wait_booted(60)
        footprint = vm.measure()
        pid = vm.proc.pid
    assert 0 < timings.guest_uptime_ms < timings.boot_ms
    assert timings.host_overhead_ms == pytest.approx(timings.boot_ms - timings.guest_uptime_ms)
    assert footprint.pss > 16 * 2**20 and footprint.rss >= footprint.pss
    assert footprint.disk == qemu_guest.kernel.stat().st_size + qemu_guest.initrd.stat().st_size
    assert vm.facts()["accelerator"] == config.accel
    assert not alive(pid)


def test_http_guest_answers_on_loopback(qemu_guest):
    config = host_config(qemu_guest.kernel, qemu_guest.initrd, mode="http", http_port=free_port())
    with QemuMicrovm(config) as vm:
        timings = vm.wait_booted(60)
    assert timings.http_ms is not None and timings.http_ms >= timings.boot_ms * 0.5


def test_guest_that_never_prints_its_marker_times_out_and_is_killed(qemu_guest, tmp_path):
    from chronicle.lab.guest import build_initramfs, busybox_static

    silent = build_initramfs(
        tmp_path / "silent.cpio.gz",
        busybox=busybox_static(),
        init_script="#!/bin/sh\nwhile :; do sleep 1; done\n",
    )
    vm = QemuMicrovm(host_config(qemu_guest.kernel, silent))
    started = time.monotonic()
    with pytest.raises(BootTimeout, match="did not print its boot marker"):
        with vm:
            pid = vm.proc.pid
            vm.wait_booted(4)
    assert time.monotonic() - started < 15
    assert not alive(pid)


def test_qemu_killed_mid_boot_is_reported_with_its_exit_code(qemu_guest):
    vm = QemuMicrovm(host_config(qemu_guest.kernel, qemu_guest.initrd))
    with vm:
        killer = threading.Timer(0.3, os.kill, (vm.proc.pid, 9))
        killer.start()
        started = time.monotonic()
        with pytest.raises(SubjectError, match="exited with code -9"):
            vm.wait_booted(60)
        killer.join()
    assert time.monotonic() - started < 10


def test_qemu_that_fails_to_start_reports_its_stderr(qemu_guest, tmp_path):
    vm = QemuMicrovm(host_config(tmp_path / "no-such-kernel", qemu_guest.initrd))
    with pytest.raises(SubjectError) as caught:
        with vm:
            vm.wait_booted(30)
    assert "exited with code 1" in str(caught.value)
    assert "no-such-kernel" in str(caught.value)  # qemu's own complaint, from stderr
