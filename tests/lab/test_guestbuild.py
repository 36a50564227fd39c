"""Real guests: ``static-nginx`` built by mmdebstrap, booted as an Incus container and
as a qemu microVM until its URL answers on 127.0.0.1, and nothing left behind."""

from __future__ import annotations

import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from chronicle.errors import LabError
from chronicle.lab import guestboot, guestbuild, guestdef
from chronicle.lab.probes import free_port
from chronicle.paths import lab_dir
from tests.support import (
    built_guest,
    chronicle_lab_guest,
    incus_client,
    processes_mentioning,
    require,
)

from .conftest import SRC, cli_env

ROOT = SRC.parent
NAME = "static-nginx"


def chronicle(*args: str, root: Path = ROOT, env: dict[str, str] | None = None,
              timeout: float = 600):
    return chronicle_lab_guest(root, *args, env=env or cli_env(), timeout=timeout)


@pytest.fixture(scope="module")
def client():
    return incus_client()


@pytest.fixture(scope="module")
def built(client):
    return built_guest(ROOT, NAME, client)


def test_the_build_records_its_packages_and_derives_both_boots(built, client):
    definition, found = built
    assert found.key == guestbuild.build_key(definition)
    assert "nginx-light" in found.packages and "systemd" in found.packages
    assert found.kernel.read_bytes()[:4] == b"\x7fELF"  # PVH: the ELF, not the bzImage
    assert found.disk.stat().st_size > 256 * 2**20
    assert client.images.get_by_alias(found.alias).fingerprint == found.fingerprint


def test_a_second_build_of_the_same_definition_is_skipped(built):
    _, found = built
    before = (found.folder / guestbuild.MANIFEST).stat().st_mtime_ns
    start = time.monotonic()
    run = chronicle("build", NAME)
    assert run.returncode == 0, run.stderr
    assert "unchanged since its build" in run.stderr and "skipped" in run.stderr
    assert time.monotonic() - start < 20
    assert (found.folder / guestbuild.MANIFEST).stat().st_mtime_ns == before


def test_a_changed_definition_is_not_the_current_build(built, client, tmp_path):
    definition, _ = built
    folder = tmp_path / "experiments" / "guests"
    shutil.copytree(definition.path.parent / NAME, folder / NAME)
    changed = folder / f"{NAME}.toml"
    changed.write_text(definition.path.read_text().replace('"nginx-light"', '"nginx-full"'))
    assert guestbuild.current_build(lab_dir(ROOT), guestdef.load(changed), client) is None


def test_the_container_answers_the_url_through_a_loopback_proxy(built, client):
    definition, found = built
    with guestboot.running_container(client, definition, found, timeout=60) as booted:
        assert guestboot.url_answers(booted.port, "/")
    assert 0 < booted.seconds < 60
    assert not guestboot.url_answers(booted.port, "/")
    prefix = f"chronicle-guest-{NAME}-"
    assert not [i.name for i in client.instances.all() if i.name.startswith(prefix)]


def test_the_microvm_boots_the_disk_until_the_url_answers(built):
    definition, found = built
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    before = (found.disk.stat().st_mtime_ns, found.disk.stat().st_size)
    with guestboot.running_microvm(definition, found, timeout=90) as booted:
        assert guestboot.url_answers(booted.port, "/")
    assert 0 < booted.seconds < 90
    assert not guestboot.url_answers(booted.port, "/")
    assert processes_mentioning(str(found.disk)) == []
    assert (found.disk.stat().st_mtime_ns, found.disk.stat().st_size) == before


def test_a_guest_that_never_answers_times_out_and_leaves_nothing(built, client, tmp_path):
    definition, found = built
    wrong = guestdef.GuestDefinition(**{**definition.__dict__, "app": guestdef.App(
        "nginx.service", 8081, "/")})
    with pytest.raises(LabError, match="as a container: GET / on 127.0.0.1:"):
        with guestboot.running_container(client, wrong, found, timeout=4):
            pass
    prefix = f"chronicle-guest-{NAME}-"
    assert not [i.name for i in client.instances.all() if i.name.startswith(prefix)]
    assert guestboot.url_answers(free_port(), "/") is False


def test_a_package_that_does_not_exist_names_file_and_key(client, tmp_path):
    require(shutil.which("mmdebstrap") is not None, "mmdebstrap (`chronicle lab setup`)")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "site.toml").write_text('title = "t"\nbase_url = "http://x/"\n')
    folder = tmp_path / "experiments" / "guests"
    folder.mkdir(parents=True)
    (folder / "broken.toml").write_text(
        'suite = "bookworm"\npackages = ["chronicle-no-such-package"]\n\n'
        '[app]\nservice = "x.service"\nport = 80\nurl = "/"\n')
    lab = tmp_path / "lab"
    run = chronicle("build", "broken", root=tmp_path,
                    env={**cli_env(), "CHRONICLE_LAB_DIR": str(lab)}, timeout=300)
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert f"{folder / 'broken.toml'}:2: key 'packages': 'chronicle-no-such-package'" \
        in run.stderr
    assert not (lab / "guests" / "broken").exists()
    assert list((lab / "guests").iterdir()) == []  # the scratch folder is gone too
    assert not guestbuild.has_alias(client, guestbuild.image_alias("broken"))


def test_the_rails_guest_builds_and_its_page_writes_and_reads_sqlite(client):
    """rails-sqlite: about 110 s to build here (cached after), 5 s to answer as a
    container, 50 s as a microVM under TCG."""
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    definition, found = built_guest(ROOT, "rails-sqlite", client)
    assert "ruby-rails" in found.packages
    with guestboot.running_container(client, definition, found, timeout=120) as booted:
        note = urllib.parse.urlencode({"body": "written by the test"}).encode()
        base = f"http://127.0.0.1:{booted.port}"
        with urllib.request.urlopen(f"{base}/notes", data=note, timeout=30) as answer:
            page = answer.read().decode()  # the redirect to / is followed
        assert "written by the test" in page and "1 notes" in page
    with guestboot.running_microvm(definition, found, timeout=150) as booted:
        assert guestboot.url_answers(booted.port, "/")
    assert processes_mentioning(str(found.disk)) == []


def test_list_says_which_guests_are_built(built):
    run = chronicle("list")
    assert run.returncode == 0, run.stderr
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith(f"{NAME}\t"))
    assert "\tnginx.service\tbuilt (" in line


_BOOT_AND_HANG = """
import sys
from pathlib import Path
from chronicle.lab import guestbuild, guestboot, guestdef
from chronicle.paths import lab_dir
root = Path(sys.argv[1])
definition = guestdef.find(root, sys.argv[2])
with guestboot.running_microvm(definition, guestbuild.read_build(lab_dir(root), sys.argv[2]),
                               timeout=120):
    pass
"""


def test_the_microvm_dies_with_a_caller_killed_by_sigkill(built):
    import os
    import signal
    import subprocess
    import sys

    from tests.support import kill_all, left_running

    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    _, found = built
    caller = subprocess.Popen([sys.executable, "-c", _BOOT_AND_HANG, str(ROOT), NAME],
                              env=cli_env())
    deadline = time.monotonic() + 30
    while not processes_mentioning(str(found.disk)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(found.disk)), "qemu never started"
    os.kill(caller.pid, signal.SIGKILL)
    caller.wait()
    left = left_running(str(found.disk), within=5)
    kill_all(left)
    assert left == []
