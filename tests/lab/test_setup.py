"""Lab set-up: the pure decisions, the busybox image, and real runs against the daemon."""

from __future__ import annotations

import io
import os
import secrets
import tarfile
import time

import pytest
import yaml

from chronicle.lab import guest, host, image, incusd, setup
from tests.support import IN_CI, require

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_backports_copies_uri_and_key_from_deb822():
    text = setup.backports_source("bookworm", DEB822, None)
    assert "URIs: http://mirror.example/debian\n" in text
    assert "Suites: bookworm-backports\n" in text
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in text


def test_backports_falls_back_to_one_line_sources_list():
    one_line = ("# old style\n"
                "deb [arch=amd64 signed-by=/k.gpg] http://old.example/debian bookworm main\n")
    text = setup.backports_source("bookworm", None, one_line)
    assert "URIs: http://old.example/debian\n" in text and "Signed-By: /k.gpg" in text


def test_backports_already_listed_is_detected_in_either_format():
    assert setup.mentions_suite(["deb http://x/debian bookworm-backports main\n"],
                                "bookworm-backports")
    assert setup.mentions_suite(["Suites: bookworm-backports\n"], "bookworm-backports")
    assert not setup.mentions_suite(["# deb http://x bookworm-backports main\n"],
                                    "bookworm-backports")


def test_only_missing_packages_are_installed():
    wanted = setup.wanted_packages(incus=True, qemu=False, debian=False)
    assert "qemu-system-x86" not in wanted and "incus-base" in wanted
    assert setup.missing_packages(wanted, set(wanted) - {"lz4"}) == ["lz4"]


def test_preseed_is_none_when_pool_and_root_disk_exist():
    assert incusd.preseed(True, {"root": incusd.ROOT_DEVICE}) is None


def test_preseed_on_a_fresh_daemon_makes_pool_and_root_disk_but_no_network():
    doc = incusd.preseed(False, {})
    assert doc["storage_pools"][0] == {"name": "chronicle", "driver": "btrfs",
                                       "config": {"size": "8GiB"}}
    assert doc["profiles"][0]["devices"]["root"]["pool"] == "chronicle"
    assert "networks" not in doc


def _busybox_tar() -> tarfile.TarFile:
    data = image.build_busybox_image(guest.busybox_static(), created=1_700_000_000)
    return tarfile.open(fileobj=io.BytesIO(data))


def test_busybox_image_has_metadata_and_an_executable_init():
    require(_has_busybox(), "busybox-static")
    with _busybox_tar() as tar:
        meta = yaml.safe_load(tar.extractfile("metadata.yaml").read())
        init = tar.getmember("rootfs/sbin/init")
        assert meta["architecture"] == "x86_64" and meta["creation_date"] == 1_700_000_000
        assert init.mode & 0o111 and b"PWR" in tar.extractfile(init).read()
        assert tar.getmember("rootfs/bin/sh").linkname == "../bin/busybox"
        assert tar.getmember("rootfs/usr/bin/env").linkname == "../../bin/busybox"


def _has_busybox() -> bool:
    try:
        guest.busybox_static()
    except Exception:
        return False
    return True


@pytest.fixture
def client():
    require(incusd.answering(), "the Incus daemon (chronicle lab setup)")
    return host.incus_client()


@pytest.mark.incus
def test_busybox_image_imports_and_its_container_stops_quickly(client):
    require(_has_busybox(), "busybox-static")
    alias = f"chronicle-test-{secrets.token_hex(3)}"
    name = f"chronicle-test-{secrets.token_hex(3)}"
    fingerprint = image.import_image(client, image.build_busybox_image(guest.busybox_static()),
                                     alias)
    try:
        inst = client.instances.create({"name": name, "source": {"type": "image",
                                         "alias": alias}}, wait=True)
        inst.start(wait=True)
        assert inst.execute(["cat", "/www/index.html"]).stdout.startswith("<!doctype html>")
        started = time.monotonic()
        inst.stop(wait=True)
        # init exits on SIGPWR; without that Incus waits out its stop timeout.
        assert time.monotonic() - started < 10
    finally:
        if client.instances.exists(name):
            inst = client.instances.get(name)
            if inst.status != "Stopped":
                inst.stop(force=True, wait=True)
            inst.delete(wait=True)
        client.images.get(fingerprint).delete(wait=True)


@pytest.mark.incus
def test_second_setup_run_changes_nothing(capsys):
    require(os.geteuid() == 0 and incusd.answering() and _has_busybox(),
            "root and a set-up lab (chronicle lab setup)")
    started = time.monotonic()
    setup.setup()
    lines = capsys.readouterr().out.splitlines()
    steps = [line for line in lines if line.startswith("•")]
    assert steps, lines
    quiet = ("already", "all installed", "present", "not needed")
    changed = [line for line in steps if not any(word in line for word in quiet)]
    assert changed == []
    assert time.monotonic() - started < 30


@pytest.mark.incus
@pytest.mark.skipif(not IN_CI and not os.environ.get("CHRONICLE_TEST_TEARDOWN"),
                    reason="tears Incus down under any parallel work; runs in CI "
                           "or with CHRONICLE_TEST_TEARDOWN=1")
def test_teardown_leaves_nothing_and_setup_restores(capsys):
    require(os.geteuid() == 0 and incusd.answering(), "root and a set-up lab")
    setup.teardown()
    assert setup.leftovers() == []
    assert not incusd.answering()
    setup.teardown()  # idempotent: nothing left to do is not an error
    setup.setup()
    assert incusd.answering()
    assert image.has_alias(host.incus_client(), image.BUSYBOX_ALIAS)
