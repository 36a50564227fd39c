"""A guest's Incus VM image: a GPT disk derived from its build once, again only when the
build changes; the daemon takes it as a VM image; the disk boots the app on the machine
Incus builds for a VM; a broken step names the guest and keeps the previous disk."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from chronicle.errors import LabError
from chronicle.lab import guestvm
from chronicle.lab.guestbuild import delete_image
from tests.support import (
    built_for_microvm,
    chronicle_lab_guest,
    incus_client,
    processes_mentioning,
    require,
    small_guest_build,
)

from .conftest import SRC

ROOT = SRC.parent
GUEST = "static-nginx"
KERNEL = b"the guest's compressed kernel, as its /boot holds it\n"


@pytest.fixture
def small(tmp_path):
    """static-nginx's definition with a build of a few files (a real ext4 image holding
    a /boot/vmlinuz, a real initrd): derives in a second."""
    for tool in ("mkfs.vfat", "mcopy", "sfdisk", "qemu-img", "debugfs"):
        require(shutil.which(tool) is not None, f"{tool} (`chronicle lab setup`)")
    require(guestvm.BOOT_LOADER.is_file(), "systemd-boot-efi (`chronicle lab setup`)")
    definition, build, remake_disk = small_guest_build(ROOT, GUEST, tmp_path)
    remake_disk({f"boot/vmlinuz-{build.kernel_version}": KERNEL})
    return definition, build, remake_disk


def _raw(disk: Path, folder: Path) -> Path:
    raw = folder / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disk), str(raw)], check=True)
    return raw


def _esp_file(raw: Path, esp_start: int, path: str) -> bytes:
    return subprocess.run(["mtype", "-i", f"{raw}@@{esp_start * 512}", f"::/{path}"],
                          capture_output=True, check=True,
                          env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}).stdout


def test_the_disk_boots_the_guests_own_kernel_then_holds_its_root_byte_for_byte(
        small, tmp_path):
    definition, build, _ = small
    made = guestvm.derive(definition, build)
    raw = _raw(made.disk, tmp_path)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True,
                                      check=True).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    esp, root = table["partitions"]
    assert (esp["type"], root["type"]) == (guestvm.ESP_TYPE, guestvm.ROOT_TYPE)
    with raw.open("rb") as disk:
        disk.seek(root["start"] * 512)
        assert disk.read(build.disk.stat().st_size) == build.disk.read_bytes()
    uuid = subprocess.run(["blkid", "-p", "-o", "value", "-s", "UUID", str(build.disk)],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert made.root_uuid == uuid
    entry = _esp_file(raw, esp["start"], "loader/entries/chronicle.conf").decode()
    assert f"root=UUID={uuid} " in entry
    assert _esp_file(raw, esp["start"], "vmlinuz") == KERNEL
    assert _esp_file(raw, esp["start"], "initrd.img") == build.initrd.read_bytes()
    assert (_esp_file(raw, esp["start"], "EFI/BOOT/BOOTX64.EFI")
            == guestvm.BOOT_LOADER.read_bytes())


def test_the_disk_is_derived_once_and_again_only_when_the_build_changes(small, tmp_path):
    definition, build, remake_disk = small
    made = guestvm.derive(definition, build)
    inode = made.disk.stat().st_ino
    again = guestvm.derive(definition, build)
    assert again.skipped and again.disk.stat().st_ino == inode
    remake_disk({f"boot/vmlinuz-{build.kernel_version}": KERNEL, "srv/new": b"new\n"})
    changed = guestvm.derive(definition, build)
    assert not changed.skipped and changed.key != made.key
    assert changed.root_uuid != made.root_uuid  # a new mkfs, a new UUID: the entry follows
    esp = json.loads(subprocess.run(["sfdisk", "--json", str(_raw(changed.disk, tmp_path))],
                                    capture_output=True, check=True).stdout
                     )["partitiontable"]["partitions"][0]
    entry = _esp_file(tmp_path / "disk.raw", esp["start"], "loader/entries/chronicle.conf")
    assert f"root=UUID={changed.root_uuid} ".encode() in entry
    assert [p.name for p in build.folder.iterdir() if p.name.startswith(".")] == []


def test_a_broken_step_names_the_guest_and_keeps_the_disk_it_had(small, monkeypatch):
    definition, build, remake_disk = small
    made = guestvm.derive(definition, build)
    remake_disk({"srv/new": b"new\n"})  # no /boot/vmlinuz any more
    with pytest.raises(LabError) as error:
        guestvm.derive(definition, build)
    assert f"guest {GUEST}: VM disk: root.ext4 has no /boot/vmlinuz-" in error.value.message
    assert error.value.path == definition.path
    monkeypatch.setattr(guestvm, "BOOT_LOADER", build.folder / "no-such-loader.efi")
    with pytest.raises(LabError, match="systemd-boot-efi"):
        guestvm.derive(definition, build)
    kept = guestvm.read_disk(build)
    assert kept is not None and kept.key == made.key and kept.disk.is_file()
    assert [p.name for p in build.folder.iterdir() if p.name.startswith(".")] == []


def test_the_daemon_takes_it_as_a_vm_image_once_and_a_failed_import_keeps_the_alias(small):
    definition, build, _ = small
    definition = replace(definition, name=f"vmtest-{secrets.token_hex(3)}")
    client = incus_client()
    alias = guestvm.vm_alias(definition.name)
    try:
        made = guestvm.ensure_image(client, definition, build)
        image = client.images.get_by_alias(alias)
        assert (image.fingerprint, image.type) == (made.fingerprint, "virtual-machine")
        assert guestvm.ensure_image(client, definition, build).skipped
        (guestvm.vm_dir(build) / "image.json").unlink()  # nothing says it is current
        (guestvm.vm_dir(build) / "metadata.tar").write_bytes(b"not a tar archive")
        with pytest.raises(LabError, match=f"guest {definition.name}: importing its VM image"):
            guestvm.ensure_image(client, definition, build)
        assert client.images.get_by_alias(alias).fingerprint == made.fingerprint
    finally:
        for image in client.images.all():
            if any(a["name"] == alias for a in image.aliases):
                delete_image(client, image.fingerprint)


def test_lab_guest_try_boots_the_vm_image_on_incus_machine_to_its_app():
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    definition, build = built_for_microvm(ROOT, GUEST)
    done = chronicle_lab_guest(ROOT, "try", GUEST, "--as", "uefi-vm", "--timeout", "240")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{GUEST} as a uefi-vm: GET / answered 200" in done.stdout
    disk = guestvm.read_disk(build)
    assert disk is not None and processes_mentioning(str(disk.disk)) == []
