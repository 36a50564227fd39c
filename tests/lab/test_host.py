"""Host facts: KVM kind, TSC frequency, qemu version, Incus VM support."""

from __future__ import annotations

from pathlib import Path

import pytest

from chronicle.lab import host
from tests.support import require


def fake_host(tmp_path: Path, *, kvm: bool, modules: tuple[str, ...], flags: str = ""):
    dev = tmp_path / "kvm"
    if kvm:
        dev.touch()
    mods = tmp_path / "module"
    for m in modules:
        (mods / m).mkdir(parents=True)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: fpu {flags}\ncpu MHz\t\t: 2596.118\n")
    return {"dev": dev, "modules": mods, "cpuinfo": cpuinfo}


def test_no_dev_kvm_is_none(tmp_path):
    assert host.kvm_kind(**fake_host(tmp_path, kvm=False, modules=("kvm_intel",))) == "none"


def test_kvm_pvm_module_is_pvm(tmp_path):
    assert host.kvm_kind(**fake_host(tmp_path, kvm=True, modules=("kvm", "kvm_pvm"))) == "pvm"


def test_vendor_module_is_hardware(tmp_path):
    assert host.kvm_kind(**fake_host(tmp_path, kvm=True, modules=("kvm", "kvm_amd"))) == "hw"


def test_built_in_kvm_falls_back_to_cpu_flags(tmp_path):
    assert host.kvm_kind(**fake_host(tmp_path, kvm=True, modules=(), flags="vmx")) == "hw"


def test_only_hardware_kvm_gets_the_kvm_accelerator():
    assert [host.accelerator(k) for k in ("hw", "pvm", "none")] == ["kvm", "tcg", "tcg"]


def test_tsc_khz_comes_from_cpu_mhz(tmp_path):
    cpuinfo = fake_host(tmp_path, kvm=False, modules=())["cpuinfo"]
    assert host.tsc_khz(cpuinfo) == 2596118


def test_tsc_khz_is_none_without_cpu_mhz(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor : 0\n")
    assert host.tsc_khz(tmp_path / "cpuinfo") is None


def test_this_host_kind_matches_its_modules():
    kind = host.kvm_kind()
    if Path("/sys/module/kvm_pvm").exists():
        assert kind == "pvm"
    elif not Path("/dev/kvm").exists():
        assert kind == "none"


def test_which_finds_incusd_off_path():
    incusd = host.which("incusd")
    if Path("/usr/libexec/incus/incusd").exists():
        assert incusd == Path("/usr/libexec/incus/incusd")


@pytest.mark.qemu
def test_qemu_version_is_a_dotted_number():
    version = host.qemu_version()
    require(version is not None, "qemu-system-x86_64")
    assert version.split(".")[0].isdigit()


class _HostInfo:
    """Only the one field the decision reads; the real daemon is checked below."""

    def __init__(self, driver: str):
        self.host_info = {"environment": {"driver": driver}}


def test_vm_support_needs_the_qemu_driver():
    assert host.incus_vm_support(_HostInfo("lxc | qemu"))[0] is True
    ok, reason = host.incus_vm_support(_HostInfo("lxc"))
    assert ok is False and "qemu" in reason


@pytest.mark.incus
def test_real_daemon_reports_no_vms_on_pvm_hosts():
    require(host.incus_socket().exists(), "the Incus daemon")
    ok, reason = host.incus_vm_support(host.incus_client())
    if Path("/sys/module/kvm_pvm").exists():
        assert ok is False and "pvm" in reason
