"""Firecracker and cloud-hypervisor: configuration from their docs, and the honest
"cannot run here" outcomes (neither is installable on our machines)."""

from __future__ import annotations

import json

import pytest

from chronicle.lab.subjects import Unsupported
from chronicle.lab.subjects.cloud_hypervisor import CloudHypervisor, cloud_hypervisor_command
from chronicle.lab.subjects.firecracker import (
    BOOT_TIMER,
    Firecracker,
    firecracker_command,
    firecracker_config,
)


def test_firecracker_config_has_the_documented_sections(tmp_path):
    config = firecracker_config(tmp_path / "vmlinux", tmp_path / "initrd",
                                cmdline="chronicle.idle=1", memory_mib=128)
    assert config["boot-source"]["kernel_image_path"] == str(tmp_path / "vmlinux")
    assert config["boot-source"]["initrd_path"] == str(tmp_path / "initrd")
    assert config["boot-source"]["boot_args"].startswith("console=ttyS0 ")
    assert config["boot-source"]["boot_args"].endswith("chronicle.idle=1")
    assert config["machine-config"] == {"vcpu_count": 1, "mem_size_mib": 128}
    assert config["drives"] == [] and config["network-interfaces"] == []
    json.dumps(config)  # the file is plain JSON


def test_firecracker_config_can_carry_a_tap_interface(tmp_path):
    config = firecracker_config(tmp_path / "k", tmp_path / "i", tap="tap0")
    assert config["network-interfaces"][0]["host_dev_name"] == "tap0"


def test_firecracker_runs_without_api_from_its_config_file_with_the_boot_timer(tmp_path):
    argv = firecracker_command(tmp_path / "fc.json")
    assert argv[:4] == ["firecracker", "--no-api", "--config-file", str(tmp_path / "fc.json")]
    assert "--boot-timer" in argv


def test_firecracker_subject_writes_its_config_into_the_scratch_folder(tmp_path):
    vm = Firecracker(tmp_path / "k", tmp_path / "i", tmp_path / "scratch")
    written = json.loads((tmp_path / "scratch" / "firecracker.json").read_text())
    assert written["boot-source"]["kernel_image_path"] == str(tmp_path / "k")
    assert vm.argv[vm.argv.index("--config-file") + 1] == str(tmp_path / "scratch" /
                                                            "firecracker.json")


def test_boot_timer_line_is_read_in_microseconds():
    line = b"[fc_vcpu 0] Guest-boot-time =  12345 us 12 ms,  11000 CPU us 11 CPU ms\n"
    assert int(BOOT_TIMER.search(line).group(1)) == 12345


def test_cloud_hypervisor_command_follows_its_documented_flags(tmp_path):
    argv = cloud_hypervisor_command(tmp_path / "vmlinux", tmp_path / "initrd",
                                    cmdline="chronicle.idle=1")
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert flags["--kernel"] == str(tmp_path / "vmlinux")
    assert flags["--initramfs"] == str(tmp_path / "initrd")
    assert flags["--cpus"] == "boot=1" and flags["--memory"] == "size=256M"
    assert flags["--serial"] == "tty" and flags["--console"] == "off"
    assert flags["--cmdline"].startswith("console=ttyS0") and "chronicle.idle=1" in flags[
        "--cmdline"]


@pytest.mark.parametrize("subject", [Firecracker, CloudHypervisor])
def test_missing_binary_is_unsupported_not_installed(subject):
    with pytest.raises(Unsupported, match="chronicle-no-such-vmm not installed"):
        subject.check("chronicle-no-such-vmm")


@pytest.mark.parametrize("subject", [Firecracker, CloudHypervisor])
def test_installed_vmm_without_hardware_kvm_is_unsupported(subject):
    with pytest.raises(Unsupported, match="needs hardware KVM; this host's KVM kind is pvm"):
        subject.check("sh", kvm_kind="pvm")


@pytest.mark.parametrize("subject", [Firecracker, CloudHypervisor])
def test_http_is_unsupported_for_tap_only_vmms(subject):
    with pytest.raises(Unsupported, match="only TAP networking"):
        subject.check("sh", kvm_kind="hw", http=True)
