"""A built guest's other roots: derived from its ext4 disk once, again only when that
changes; each boots the app; a broken step names the guest and leaves nothing behind."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from chronicle.errors import LabError
from chronicle.lab import guestroots, host
from chronicle.lab.guestboot import MEMORY_MIB, microvm_command
from chronicle.lab.subjects.base import SubjectError
from chronicle.lab.subjects.qemu import choose_accel
from tests.support import (
    alive,
    built_for_microvm,
    loop_devices_of,
    mounts_under,
    processes_mentioning,
    require,
    run_app_experiment,
    small_guest_build,
)

from .conftest import SRC

ROOT = SRC.parent
GUEST = "static-nginx"


@pytest.fixture
def small(tmp_path):
    """static-nginx's definition with a build of a few files (a real ext4 image and a real
    initrd made by the tools): derives in a second."""
    require(shutil.which("mkfs.erofs") is not None, "mkfs.erofs (`chronicle lab setup`)")
    require(shutil.which("cpio") is not None, "cpio (`chronicle lab setup`)")
    return small_guest_build(ROOT, GUEST, tmp_path)


def test_roots_are_derived_once_and_again_only_when_the_ext4_image_changes(small):
    definition, build, remake_disk = small
    made = guestroots.derive(definition, build)
    assert not made.skipped
    erofs_inode = made.erofs.stat().st_ino
    again = guestroots.derive(definition, build)
    assert again.skipped and again.erofs.stat().st_ino == erofs_inode
    remake_disk({"srv/new.txt": b"a file the first disk did not have\n"})
    changed = guestroots.derive(definition, build)
    assert not changed.skipped and changed.key != made.key
    assert b"srv/new.txt" in changed.cpio.read_bytes()
    assert [p.name for p in build.folder.iterdir() if p.name.startswith(".")] == []


def test_the_erofs_initrd_is_the_guests_own_with_the_overlay_appended(small):
    definition, build, _ = small
    roots = guestroots.derive(definition, build)
    own = build.initrd.read_bytes()
    extra = roots.erofs_initrd.read_bytes()
    assert extra.startswith(own) and len(own) % 4 != 0
    # the kernel unpacks an uncompressed archive only from an offset that is a multiple
    # of 4: zeros up to there, which it skips
    start = extra.index(b"070701", len(own))
    assert start % 4 == 0 and set(extra[len(own):start]) <= {0}
    appended = extra[start:]
    for name in (b"scripts/local-top/chronicle-root-modules", b"scripts/local-top/ORDER",
                 b"scripts/local-bottom/chronicle-root-overlay", b"chronicle-root/erofs.ko",
                 b"chronicle-root/libcrc32c.ko", b"chronicle-root/overlay.ko"):
        assert name in appended
    # dependencies first: libcrc32c before the erofs module that needs it
    assert b"for ko in libcrc32c.ko erofs.ko overlay.ko;" in appended


def test_a_broken_step_names_the_guest_and_leaves_no_mount_and_no_staging(small):
    definition, build, remake_disk = small
    remake_disk({}, drop="lib/modules/6.1.0-test/kernel/fs/overlayfs/overlay.ko")
    with pytest.raises(LabError, match=r"guest static-nginx: initrd for erofs: kernel "
                                       r"6.1.0-test has no overlay module"):
        guestroots.derive(definition, build)
    build.disk.write_bytes(b"not a file system" * 1000)
    with pytest.raises(LabError, match=r"guest static-nginx: mount root.ext4 failed"):
        guestroots.derive(definition, build)
    assert mounts_under("chronicle-static-nginx-ext4-") == []
    assert loop_devices_of(build.disk) == [] and not guestroots.roots_dir(build).exists()
    assert [p.name for p in build.folder.iterdir() if p.name.startswith(".")] == []


def test_ctrl_c_while_the_disk_is_mounted_unmounts_it_and_removes_the_staging(small):
    definition, build, _ = small

    def interrupt(line: str) -> None:
        raise KeyboardInterrupt  # the first line comes with root.ext4 mounted

    points = set(Path(tempfile.gettempdir()).glob("chronicle-static-nginx-ext4-*"))
    with pytest.raises(KeyboardInterrupt):
        guestroots.derive(definition, build, say=interrupt)
    assert mounts_under("chronicle-static-nginx-ext4-") == [] and loop_devices_of(build.disk) == []
    assert set(Path(tempfile.gettempdir()).glob("chronicle-static-nginx-ext4-*")) == points
    assert sorted(p.name for p in build.folder.iterdir()) == ["initrd.img", "root.ext4"]


def test_each_format_changes_only_the_root_of_guestboots_command_line(small):
    definition, build, _ = small
    roots = guestroots.derive(definition, build)
    base = microvm_command(definition, build, 8080, "tcg", None)
    ext4 = guestroots.format_command(base, build, guestroots.root_format("ext4", build, roots))
    assert ext4 == base
    erofs = guestroots.format_command(base, build, guestroots.root_format("erofs", build, roots))
    assert [a for a in erofs if a not in base] == [
        str(roots.erofs_initrd),
        base[base.index("-append") + 1].replace("rw", "rootfstype=erofs ro"),
        f"id=root,file={roots.erofs},format=raw,if=none,readonly=on"]
    fmt = guestroots.root_format("initramfs", build, roots)
    ram = guestroots.format_command(base, build, fmt)
    assert "-drive" not in ram and "virtio-blk-device,drive=root" not in ram
    assert [a for a in ram if a not in base] == [
        str(fmt.memory_mib), str(roots.cpio),
        base[base.index("-append") + 1].replace("root=/dev/vda rw", "rdinit=/sbin/init")]
    assert fmt.memory_mib >= MEMORY_MIB + 3 * roots.cpio.stat().st_size / 2**20


def test_root_format_boots_static_nginx_from_each_format_to_its_app(tmp_path):
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    built_for_microvm(ROOT, GUEST)
    result, _, qemus = run_app_experiment(tmp_path, ROOT, "root-format", {
        'guests = ["static-nginx", "rails-sqlite"]': f'guests = ["{GUEST}"]'}, "--repeat", "1")
    for fmt in guestroots.FORMATS:
        subject = f"{fmt}/{GUEST}"
        app = [s.value for s in result.measured if s.subject == subject and s.metric == "app_ms"]
        assert len(app) == 1 and app[0] > 0
        assert result.subject_info(subject)["root_format"] == fmt
    # the erofs boot said, from its initramfs, that the erofs is read-only under a
    # writable overlay (the subject fails without that), and nginx could write its logs
    assert "tmpfs overlay" in result.subject_info(f"erofs/{GUEST}")["root"]
    ram = result.subject_info(f"initramfs/{GUEST}")
    assert ram["memory_mib"] > MEMORY_MIB and 100 < ram["tree_mib"] < ram["memory_mib"]
    assert qemus and [p for p in qemus if alive(p)] == []


def test_a_boot_whose_console_never_names_its_root_fails(tmp_path):
    # what keeps an erofs boot honest: without its initramfs's CHRONICLE-ROOT lines (the
    # erofs read-only below, the overlay writable on top) the boot is no erofs boot
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64")
    definition, build = built_for_microvm(ROOT, GUEST)
    roots = guestroots.derive(definition, build)
    ext4 = guestroots.root_format("ext4", build, roots)
    claimed = replace(ext4, console_proof=guestroots.root_format("erofs", build,
                                                                  roots).console_proof)
    vm = guestroots.FormatMicrovm(definition, build, claimed, choose_accel(host.kvm_kind()),
                                  host.tsc_khz())
    with pytest.raises(SubjectError, match=r"ext4/static-nginx: the app answered but the "
                                           r"console never said \['CHRONICLE-ROOT /root"):
        with vm:
            vm.wait_booted(240)
    assert vm.proc is None and processes_mentioning(str(build.disk)) == []
