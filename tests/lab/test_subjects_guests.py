"""A built guest as a subject: phases that add up, a footprint, nothing left behind."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from dataclasses import replace

import pytest

from chronicle.errors import LabError
from chronicle.lab import host
from chronicle.lab.guestboot import microvm_command
from chronicle.lab.subjects.base import SubjectError
from chronicle.lab.subjects.guests import (
    GuestContainer,
    GuestMicrovm,
    GuestRunner,
    guest_subjects,
)
from chronicle.lab.subjects.qemu import choose_accel
from tests.support import built_guest, incus_client, processes_mentioning, require

from .conftest import SRC

ROOT = SRC.parent
NAME = "static-nginx"


@pytest.fixture(scope="module")
def guest():
    """static-nginx, built (a no-op when test_guestbuild built it already)."""
    client = incus_client()
    return (client, *built_guest(ROOT, NAME, client))


def test_the_microvm_reports_phases_that_add_up_to_the_wall_clock(guest):
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    _, definition, found = guest
    with GuestMicrovm(definition, found, choose_accel(host.kvm_kind()), host.tsc_khz()) as vm:
        timings = vm.wait_booted(120)
        footprint = vm.measure()
        facts = vm.facts()
    phases = timings.phases
    assert phases["kernel_to_init_ms"] > 0 and phases["init_to_app_ms"] > 0
    assert phases["outside_ms"] > 0  # qemu's start and firmware, at least
    parts = phases["kernel_to_init_ms"] + phases["init_to_app_ms"] + phases["outside_ms"]
    assert parts == pytest.approx(phases["app_ms"], abs=0.01)
    assert footprint.pss > 32 * 2**20 and footprint.disk >= found.disk.stat().st_size
    assert facts["guest"] == NAME and "nginx-light " in facts["guest_packages"]
    assert processes_mentioning(str(found.disk)) == []


def test_the_microvm_through_a_microvm_nix_runner_boots_the_same_qemu(guest):
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    _, definition, found = guest
    accel, tsc = choose_accel(host.kvm_kind()), host.tsc_khz()
    with GuestRunner(definition, found, accel, tsc) as vm:
        script = vm.script
        assert script.read_text().splitlines()[-1].startswith("exec ")
        timings = vm.wait_booted(120)
        # the runner's shell exec'd qemu: the hypervisor measured is the spawned process
        assert vm.vmm_pid() == vm.proc.pid
        assert vm.hypervisor_argv[1:] == microvm_command(definition, found, vm.http_port,
                                                         accel, tsc)[1:]
        footprint = vm.measure()
        facts = vm.facts()
    phases = timings.phases
    assert phases["kernel_to_init_ms"] > 0 and phases["init_to_app_ms"] > 0
    parts = phases["kernel_to_init_ms"] + phases["init_to_app_ms"] + phases["outside_ms"]
    assert parts == pytest.approx(phases["app_ms"], abs=0.01)
    assert footprint.pss > 32 * 2**20 and footprint.detail["vmm"].startswith("qemu-system")
    assert facts["vmm"] == "microvm-run" and facts["hypervisor"].startswith("qemu-system")
    assert facts["guest"] == NAME
    assert not script.exists()
    assert processes_mentioning(str(found.disk)) == []


def test_the_container_reports_phases_on_the_hosts_clock(guest):
    client, definition, found = guest
    with GuestContainer(client, definition, found, experiment="guest-test") as box:
        timings = box.wait_booted(60)
        footprint = box.measure()
        name = box.instance_name
    phases = timings.phases
    # The container's systemd and this process read one monotonic clock: every phase
    # is positive only if that holds.
    assert 0 < phases["create_to_init_ms"] < phases["app_ms"]
    assert phases["init_to_app_ms"] > 0 and phases["outside_ms"] >= 0
    assert footprint.pss > 4 * 2**20 and footprint.cgroup
    assert name not in [i.name for i in client.instances.all()]


def test_a_guest_not_built_from_its_definition_says_how_to_build_it(guest, tmp_path):
    folder = tmp_path / "experiments" / "guests"
    shutil.copytree(ROOT / "experiments" / "guests" / NAME, folder / NAME)
    shutil.copy(ROOT / "experiments" / "guests" / f"{NAME}.toml", folder / "fresh.toml")
    with pytest.raises(LabError, match="run `chronicle lab guest build fresh`"):
        guest_subjects("t", tmp_path, tmp_path / "lab", "fresh")


def test_a_container_that_powers_off_before_its_app_answers_fails_at_once(guest):
    client, definition, found = guest
    # A URL nginx answers 404: the app never counts as up, so only the stop can end the
    # wait before its timeout.
    never = replace(definition, app=replace(definition.app, url="/never-there"))
    with GuestContainer(client, never, found, experiment="guest-test-halts") as box:
        poweroff = threading.Thread(target=_power_off, args=(box.instance,), daemon=True)
        poweroff.start()
        started = time.monotonic()
        with pytest.raises(SubjectError, match=rf"{box.instance_name} is Stopp(ed|ing)"):
            box.wait_booted(120)
        assert time.monotonic() - started < 30  # not the 120 s timeout
        name = box.instance_name
    poweroff.join()
    assert name not in [i.name for i in client.instances.all()]


def _power_off(instance) -> None:
    """Power the container off from inside, as a guest whose systemd halts would: retried
    while its systemd is too young to take the request."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # gone already, or not up yet
            if instance.execute(["systemctl", "poweroff"]).exit_code == 0:
                return
        time.sleep(0.5)
