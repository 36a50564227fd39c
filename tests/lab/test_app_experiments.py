"""footprint-app and density, quick, as a user runs them: real Incus, real qemu, the
small guest; each stops where it should and leaves no instance and no qemu behind."""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest

from chronicle.lab import host
from chronicle.lab.density import run_step
from chronicle.lab.subjects.base import SubjectError, made_by
from chronicle.lab.subjects.guests import GuestContainer
from tests.support import (
    alive,
    app_site,
    built_guest,
    incus_client,
    interrupt_when,
    require,
    run_app_experiment,
)

from .conftest import SRC

ROOT = SRC.parent
GUEST = "static-nginx"


@pytest.fixture(scope="module")
def client():
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    found = incus_client()
    built_guest(ROOT, GUEST, found)
    return found


def test_a_density_step_whose_instance_dies_ends_at_once_saying_so(client):
    definition, build = built_guest(ROOT, GUEST, client)
    # a URL nginx answers 404: the app never counts as up, so only the stop ends the wait
    never = replace(definition, app=replace(definition.app, url="/never-there"))
    experiment = f"density-test-dies-{secrets.token_hex(3)}"

    def stop_it() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for instance in client.instances.all():
                if made_by(instance.name, experiment) and instance.status == "Running":
                    instance.stop(force=True, wait=True)
                    return
            time.sleep(0.2)

    stopper = threading.Thread(target=stop_it, daemon=True)
    stopper.start()
    started = time.monotonic()
    with pytest.raises(SubjectError, match=r"1 of 1 instances ended before their app "
                                           r"answered; the first: chronicle-density-test"):
        run_step(lambda: GuestContainer(client, never, build, experiment=experiment), 1,
                 timeout=300, settle=0)
    stopper.join()
    assert time.monotonic() - started < 90  # not the 300 s timeout
    assert _ours(client, experiment) == []


def _ours(client, experiment: str) -> list[str]:
    return [i.name for i in client.instances.all() if made_by(i.name, experiment)]


def _values(result, subject: str, metric: str) -> list[float]:
    return [s.value for s in sorted(result.measured, key=lambda s: s.run)
            if s.subject == subject and s.metric == metric]


def test_boot_to_app_times_each_way_phase_by_phase_and_says_why_not_as_a_vm(client,
                                                                          tmp_path):
    result, name, qemus = run_app_experiment(tmp_path, ROOT, "boot-to-app", {
        'guests = ["static-nginx", "rails-sqlite"]': f'guests = ["{GUEST}"]'}, "--repeat", "1")
    for way, first in (("qemu-microvm", "kernel_to_init_ms"),
                       ("microvm-run", "kernel_to_init_ms"),
                       ("qemu-uefi", "kernel_to_init_ms"),
                       ("incus-container", "create_to_init_ms")):
        subject = f"{way}/{GUEST}"
        parts = [_values(result, subject, m)[0]
                 for m in (first, "init_to_app_ms", "outside_ms")]
        assert min(parts) >= 0, (subject, parts)  # the guest's clock and ours agree
        assert sum(parts) == pytest.approx(_values(result, subject, "app_ms")[0], abs=0.01)
        assert _values(result, subject, "pss_mib")[0] > 0
    uefi = result.subject_info(f"qemu-uefi/{GUEST}")
    assert uefi["machine"].startswith("q35, UEFI") and "incus_version" not in uefi
    vm_ok, why_not = host.incus_vm_support(client)
    if vm_ok:
        assert _values(result, f"incus-vm/{GUEST}", "app_ms")
    else:  # measured nowhere, and the result says why
        info = result.subject_info(f"incus-vm/{GUEST}")
        assert info["status"] == "unsupported" and why_not in info["reason"], info
    assert _ours(client, name) == []
    assert qemus and [p for p in qemus if alive(p)] == []


def test_footprint_app_measures_each_way_idle_and_after_its_burst(client, tmp_path):
    result, name, qemus = run_app_experiment(tmp_path, ROOT, "footprint-app", {
        'guests = ["static-nginx", "rails-sqlite"]': f'guests = ["{GUEST}"]'}, "--repeat", "1")
    for way in ("qemu-microvm", "incus-container"):
        subject = f"{way}/{GUEST}"
        assert _values(result, subject, "pss_mib") and _values(result, subject, "burst_pss_mib")
        assert _values(result, subject, "burst_ms")[0] > 0
        assert result.subject_info(subject)["requests"] == 20
    assert _values(result, f"incus-container/{GUEST}", "burst_cgroup_mib")
    assert _ours(client, name) == []
    assert qemus and [p for p in qemus if alive(p)] == []


def test_density_stops_at_its_budget_and_removes_every_instance(client, tmp_path):
    # One static-nginx microVM is about 600 MiB of PSS here: a budget of 1000 MiB holds
    # one and not two; containers reach quick mode's k = 2 well inside it.
    result, name, qemus = run_app_experiment(tmp_path, ROOT, "density", {
        'guest = "rails-sqlite"': f'guest = "{GUEST}"', "budget_mib = 4096": "budget_mib = 1000"})
    vm, box = f"qemu-microvm/{GUEST}", f"incus-container/{GUEST}"
    assert _values(result, vm, "instances") == [1.0]
    assert "over the budget of 1000 MiB" in result.subject_info(vm)["stopped"]
    assert _values(result, box, "instances") == [1.0, 2.0]
    assert "max_instances" in result.subject_info(box)["stopped"]
    one, two = _values(result, box, "total_pss_mib")
    assert two > one  # a second container costs something, if less than the first
    assert result.subject_info(box)["budget_mib"] == 1000
    assert _ours(client, name) == []
    # not a count of guests: the facts' `qemu-system-x86_64 --version` is a qemu process too
    assert qemus and [p for p in qemus if alive(p)] == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_density_interrupted_mid_step_leaves_nothing_behind(client, tmp_path, sig):
    # As a user stops it: Ctrl-C (or a kill) of `chronicle lab run`, whose script then
    # ends with its guests, and whose sweep removes an instance the script's own clean-up
    # missed — a create or start request the signal cut short can leave one.
    site, name, env = app_site(tmp_path, ROOT, "density", {
        'guest = "rails-sqlite"': f'guest = "{GUEST}"'})
    proc = subprocess.Popen([sys.executable, "-m", "chronicle", "lab", "run", name, "--quick",
                             "--root", str(site)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    experiment = name
    instance = []  # seen once: it may be gone again by the time a qemu appears

    def ready(now: set[int], seen: set[int]) -> bool:
        # Steps run one at a time: signal in the second one, once a qemu and an instance
        # have both existed, whichever of them the seeded order started first.
        if not instance and _ours(client, experiment):
            instance.append(True)
        return bool(seen and instance)

    stderr, seen_qemu = interrupt_when(proc, sig, ready, within=240)
    assert proc.returncode != 0, stderr.decode(errors="replace")[-2000:]
    assert _ours(client, experiment) == []
    assert [p for p in seen_qemu if alive(p)] == []
