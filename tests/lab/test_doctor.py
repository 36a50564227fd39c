"""``lab doctor`` reports the host as it is and changes nothing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from chronicle.lab import doctor, host, incusd
from tests.support import require

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def report() -> doctor.Report:
    return doctor.collect(root=REPO)


def test_kvm_line_names_this_hosts_kind(report):
    assert f"kind {host.kvm_kind()}" in report.detail("kvm")


def test_qemu_is_ok_exactly_when_qemu_is_installed(report):
    assert report.ok("qemu") == (host.qemu_version() is not None)


def test_pvm_host_reports_pvm_and_tcg(report):
    if not Path("/sys/module/kvm_pvm").exists():
        pytest.skip("not a PVM host")
    assert "kind pvm" in report.detail("kvm") and "tcg" in report.detail("kvm")


@pytest.mark.incus
def test_incus_reachable_with_a_version_and_no_vms_on_pvm(report):
    require(incusd.answering(), "the Incus daemon")
    assert report.ok("incus") and "version 6." in report.detail("incus")
    assert report.ok("incus-containers")
    if Path("/sys/module/kvm_pvm").exists():
        assert not report.ok("incus-vms") and "qemu driver" in report.detail("incus-vms")


def test_missing_firecracker_is_reported_not_on_path(report):
    if host.which("firecracker") is None:
        assert not report.ok("firecracker") and report.detail("firecracker") == "not on PATH"


def test_unsupported_subject_carries_its_reason():
    report = doctor.Report([doctor.Check("qemu", True, "7.2"),
                            doctor.Check("guest-assets", False, "run setup")])
    assert doctor.subject_status(report, "qemu-microvm") == (False, "guest-assets: run setup")


def test_tags_pick_subjects_and_measure_only_tags_pick_all():
    assert doctor.subjects_for_tags(("incus",)) == ("incus-container", "incus-vm")
    assert doctor.subjects_for_tags(("baseline",)) == ()
    assert "microvm-run" in doctor.subjects_for_tags(("boot", "microvm"))


def test_report_exits_zero_and_require_exits_one_when_missing(capsys):
    args = argparse.Namespace(json=True, require=None, root=None)
    assert doctor.run(args) == 0
    facts = json.loads(capsys.readouterr().out)
    assert {c["name"] for c in facts["checks"]} >= {"kvm", "qemu", "incus", "guest-assets"}
    assert doctor.run(argparse.Namespace(json=False, require="no-such-part", root=None)) == 1


def test_doctor_changes_no_lab_files(tmp_path):
    doctor.collect(lab=tmp_path, root=REPO)
    assert list(tmp_path.iterdir()) == []


def test_containment_line_says_what_holds_a_run(report):
    from chronicle.lab.containment import runs_parent

    if runs_parent()[0] is not None:
        assert report.ok("containment") and "cgroup v2" in report.detail("containment")
    else:
        assert not report.ok("containment")
        assert "process group only" in report.detail("containment")


def test_uefi_says_which_part_a_guests_vm_image_lacks(monkeypatch, tmp_path):
    from chronicle.lab import guestvm

    firmware = tmp_path / "CODE.fd", tmp_path / "VARS.fd"
    for path in firmware:
        path.write_bytes(b"firmware")
    monkeypatch.setattr(guestvm, "FIRMWARE", (tuple(map(str, firmware)),))
    monkeypatch.setattr(guestvm, "BOOT_LOADER", tmp_path / "systemd-bootx64.efi")
    check = doctor._uefi_check()
    assert not check.ok and "systemd-boot-efi" in check.detail
    guestvm.BOOT_LOADER.write_bytes(b"a boot loader")
    assert doctor._uefi_check().ok
    firmware[0].unlink()
    check = doctor._uefi_check()
    assert not check.ok and "no OVMF firmware" in check.detail
    report = doctor.Report([doctor.Check("qemu", True, ""), check])
    assert doctor.subject_status(report, "qemu-uefi") == (False, f"uefi: {check.detail}")
