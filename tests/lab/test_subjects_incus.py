"""Incus subjects against the real daemon through pylxd."""

from __future__ import annotations

import pytest

from chronicle.errors import LabError
from chronicle.lab.probes import free_port, http_answers
from chronicle.lab.subjects import Unsupported
from chronicle.lab.subjects.incus import IncusInstance, instance_config
from tests.support import require


@pytest.fixture(scope="module")
def client():
    from chronicle.lab import host

    try:
        found = host.incus_client()
        found.images.get_by_alias("chronicle-busybox")
    except Exception:  # no daemon, no image: the set-up is missing
        found = None
    require(found is not None, "Incus with the chronicle-busybox image (`chronicle lab setup`)")
    return found


def _names(client) -> set[str]:
    return {i.name for i in client.instances.all()}


def test_create_request_names_the_image_and_a_loopback_proxy():
    config = instance_config("chronicle-t-1", "chronicle-busybox", "container", http_port=8123)
    assert config["source"] == {"type": "image", "alias": "chronicle-busybox"}
    assert config["devices"]["http"] == {
        "type": "proxy", "listen": "tcp:127.0.0.1:8123", "connect": "tcp:127.0.0.1:80",
    }
    assert config["config"]["environment.CHRONICLE_HTTP"] == "1"


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        IncusInstance(object(), experiment="t", kind="pod")


def test_container_boots_is_measured_and_deleted(client):
    with IncusInstance(client, experiment="test-incus") as box:
        name = box.instance_name
        assert name.startswith("chronicle-test-incus-")
        timings = box.wait_booted(60)
        footprint = box.measure()
    assert 0 < timings.running_ms <= timings.boot_ms
    assert timings.guest_uptime_ms is None
    assert footprint.pss > 0 and footprint.cgroup > 0 and footprint.cgroup_peak >= footprint.cgroup
    assert footprint.disk is not None and footprint.image > 0
    assert name not in _names(client)


def test_container_http_answers_through_a_loopback_proxy_and_the_port_is_freed(client):
    port = free_port()
    with IncusInstance(client, experiment="test-incus", http_port=port) as box:
        timings = box.wait_booted(60)
        assert http_answers(port)
    assert timings.http_ms >= timings.running_ms
    assert not http_answers(port)


def test_instance_is_deleted_when_the_body_fails(client):
    with pytest.raises(RuntimeError):
        with IncusInstance(client, experiment="test-incus") as box:
            name = box.instance_name
            raise RuntimeError("boom")
    assert name not in _names(client)


def test_missing_image_is_an_error_and_leaves_nothing(client):
    box = IncusInstance(client, experiment="test-incus", alias="chronicle-no-such-image")
    with pytest.raises(LabError):
        with box:
            pass
    assert box.instance_name not in _names(client)


def test_vm_is_unsupported_with_the_reason_where_the_daemon_has_no_vm_driver(client):
    from chronicle.lab import host

    supported, reason = host.incus_vm_support(client)
    if supported:
        pytest.skip("this host runs Incus VMs")
    with pytest.raises(Unsupported) as caught:
        IncusInstance.check(client, "virtual-machine")
    assert reason in caught.value.reason


def test_a_vm_answers_through_qemus_hostfwd_on_loopback_not_a_proxy_device():
    # A VM's proxy device would need NAT mode and a bridge: never probed here.
    config = instance_config("chronicle-t-1", "chronicle-guest-x-vm", "virtual-machine",
                             http_port=8123, app_port=8080,
                             limits={"limits.memory": "512MiB"})
    assert config["devices"] == {}
    assert "hostfwd=tcp:127.0.0.1:8123-:8080" in config["config"]["raw.qemu"]
    assert config["config"]["security.secureboot"] == "false"
    assert config["config"]["limits.memory"] == "512MiB"
    assert config["type"] == "virtual-machine"
