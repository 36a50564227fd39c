"""Guest assets: the cpio writer, kernel extraction, and real TCG boots of both /init modes."""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from chronicle.errors import LabError
from chronicle.lab import guest, host
from chronicle.lab.initramfs import (
    DEFAULT_INIT,
    MARKER_RE,
    Entry,
    build_initramfs,
    read_cpio,
    write_cpio,
)
from chronicle.paths import lab_dir
from tests.support import require

REPO = Path(__file__).resolve().parents[2]


def fake_busybox(tmp_path: Path) -> Path:
    path = tmp_path / "busybox"
    path.write_bytes(b"\x7fELF not really busybox")
    return path


def members(initrd: Path) -> dict[str, Entry]:
    return {e.path: e for e in read_cpio(gzip.decompress(initrd.read_bytes()))}


def test_cpio_round_trips_through_our_reader():
    entries = [Entry("bin", stat.S_IFDIR | 0o755), Entry("bin/x", stat.S_IFREG | 0o755, b"abc")]
    assert read_cpio(write_cpio(entries)) == entries


def test_initramfs_holds_dev_console_as_char_device_5_1(tmp_path):
    initrd = build_initramfs(tmp_path / "i.cpio.gz", busybox=fake_busybox(tmp_path))
    console = members(initrd)["dev/console"]
    assert stat.S_ISCHR(console.mode) and console.rdev == (5, 1)


def test_initramfs_init_is_executable_and_applets_link_to_busybox(tmp_path):
    initrd = build_initramfs(tmp_path / "i.cpio.gz", busybox=fake_busybox(tmp_path))
    found = members(initrd)
    assert found["init"].data == DEFAULT_INIT.encode() and found["init"].mode & 0o111
    assert stat.S_ISLNK(found["bin/sh"].mode) and found["bin/sh"].data == b"busybox"


def test_initramfs_is_byte_for_byte_reproducible(tmp_path):
    a = build_initramfs(tmp_path / "a.cpio.gz", busybox=fake_busybox(tmp_path))
    b = build_initramfs(tmp_path / "b.cpio.gz", busybox=fake_busybox(tmp_path))
    assert a.read_bytes() == b.read_bytes()


def test_modules_land_in_load_order_file(tmp_path):
    (tmp_path / "a.ko").write_bytes(b"A")
    (tmp_path / "b.ko").write_bytes(b"B")
    initrd = build_initramfs(tmp_path / "i.cpio.gz", busybox=fake_busybox(tmp_path),
                             modules={"b": tmp_path / "b.ko", "a": tmp_path / "a.ko"})
    found = members(initrd)
    assert found["lib/modules/load-order"].data == b"b\na\n"
    assert found["lib/modules/a.ko"].data == b"A"


def test_extra_files_replace_defaults_and_get_parent_directories(tmp_path):
    initrd = build_initramfs(tmp_path / "i.cpio.gz", busybox=fake_busybox(tmp_path),
                             extra_files={"www/index.html": b"mine", "opt/app/run": b"#!/bin/sh\n"})
    found = members(initrd)
    assert found["www/index.html"].data == b"mine"
    assert stat.S_ISDIR(found["opt/app"].mode) and found["opt/app/run"].mode & 0o111


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed")
def test_gnu_cpio_lists_our_archive(tmp_path):
    initrd = build_initramfs(tmp_path / "i.cpio.gz", busybox=fake_busybox(tmp_path))
    listing = subprocess.run(["cpio", "-itv"], input=gzip.decompress(initrd.read_bytes()),
                             capture_output=True, check=True).stdout.decode()
    assert any(line.startswith("crw") and line.endswith("dev/console")
               for line in listing.splitlines())


def test_vmlinux_is_found_after_the_xz_magic_despite_trailing_bytes(tmp_path):
    elf = b"\x7fELF" + os.urandom(2000)
    bzimage = tmp_path / "bzImage"
    bzimage.write_bytes(b"MZ setup code" * 50 + lzma.compress(elf, format=lzma.FORMAT_XZ)
                        + b"\0trailer" * 10)
    assert guest.extract_vmlinux(bzimage, tmp_path / "vmlinux").read_bytes() == elf


def test_bzimage_without_a_payload_is_a_lab_error(tmp_path):
    bzimage = tmp_path / "bzImage"
    bzimage.write_bytes(b"nothing here" * 100)
    with pytest.raises(LabError, match="no compressed ELF"):
        guest.extract_vmlinux(bzimage, tmp_path / "vmlinux")


def test_module_dependencies_come_from_modinfo():
    ko = b"\x7fELF...\0license=GPL\0depends=virtio,virtio-ring\0name=virtio_net\0"
    assert guest._module_depends(ko) == ["virtio", "virtio_ring"]


def test_missing_assets_tell_the_user_to_run_setup(tmp_path):
    with pytest.raises(LabError, match="chronicle lab setup"):
        guest.guest_assets(tmp_path)


# --- real kernel, real qemu ------------------------------------------------------------


@pytest.fixture(scope="module")
def assets() -> guest.GuestAssets:
    require(shutil.which("apt-get") is not None and guest_busybox_present(), "apt and busybox")
    # The shared lab folder: the kernel is fetched once per machine, not per test run.
    return guest.ensure_guest_assets(lab_dir(REPO))


def guest_busybox_present() -> bool:
    try:
        guest.busybox_static()
    except LabError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_argv(assets: guest.GuestAssets, append: str, *extra: str) -> list[str]:
    khz = host.tsc_khz() or 2_000_000
    return [
        "qemu-system-x86_64", "-M", "microvm,x-option-roms=off", "-accel", "tcg", "-cpu", "max",
        "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config", "-nographic",
        "-serial", "stdio", "-no-reboot",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04", *extra,
        "-kernel", str(assets.kernel), "-initrd", str(assets.initrd),
        "-append", f"console=ttyS0 reboot=t panic=-1 quiet tsc_early_khz={khz} {append}",
    ]


def spawn(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kernel_is_an_elf_and_modules_cover_virtio_net(assets):
    assert assets.kernel.read_bytes()[:4] == b"\x7fELF"
    assert {"virtio_mmio", "virtio_net"} <= set(assets.modules)
    assert all(p.is_file() for p in assets.module_files.values())


def test_ensure_is_idempotent(assets):
    again = guest.ensure_guest_assets(lab_dir(REPO))
    assert again == assets and again.initrd.stat().st_mtime_ns == assets.initrd.stat().st_mtime_ns


@pytest.mark.qemu
def test_default_initramfs_boots_under_tcg_prints_marker_and_ends_the_vm(assets):
    require(host.qemu_version() is not None, "qemu-system-x86_64")
    proc = spawn(qemu_argv(assets, ""))
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        kill(proc)
    found = MARKER_RE.search(out)
    assert found, out.decode(errors="replace")[-2000:]
    assert float(found.group(1)) > 0


@pytest.mark.qemu
def test_http_mode_serves_index_through_hostfwd(assets):
    require(host.qemu_version() is not None, "qemu-system-x86_64")
    port = free_port()
    proc = spawn(qemu_argv(assets, "chronicle.mode=http",
                           "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:80",
                           "-device", "virtio-net-device,netdev=n0"))
    try:
        deadline, body = time.monotonic() + 90, None
        while body is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    body = r.read()
            except OSError:
                time.sleep(0.2)
    finally:
        kill(proc)
    output = proc.stdout.read().decode(errors="replace")
    assert body is not None and b"chronicle guest" in body, output[-2000:]
    assert "CHRONICLE-ERROR" not in output
