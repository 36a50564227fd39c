"""A built guest as a full virtual machine's disk: what an Incus VM boots.

Incus runs a VM as qemu's ``q35`` machine with OVMF (UEFI) firmware and its root disk
on virtio-scsi; the firmware starts what the disk's EFI system partition holds. From a
guest's build — ``root.ext4``, the very tree its container and microVM run, and the
kernel and initrd of its ``/boot`` — ``derive`` makes, under ``<lab>/guests/<name>/vm/``:

- ``disk.qcow2``: a GPT disk of two partitions. First an EFI system partition (FAT,
  filled with mtools, never mounted) holding systemd-boot as the removable-media loader
  ``EFI/BOOT/BOOTX64.EFI`` (from the host's ``systemd-boot-efi``: the guest's tree has
  no boot loader, its microVM needs none), the guest's ``vmlinuz`` and ``initrd.img``,
  and one loader entry that boots at once; then ``root.ext4`` itself, byte for byte.
  The entry names the root by its filesystem UUID, so the disk boots on virtio-scsi
  (``sda``, as Incus attaches it) as on virtio-blk (``vda``).
- ``metadata.tar``: the image's ``metadata.yaml``. With the disk it is a split Incus VM
  image, imported under ``chronicle-guest-<name>-vm`` by ``ensure_image``.

Same kernel, initrd, init and app as the microVM: what differs is the machine — the
firmware, PCI, a boot loader — which is what a full VM costs a deployer. The files are
keyed by the build (key, image fingerprint), the identity of its ``root.ext4`` and
``initrd.img``, and ``RECIPE``; they are made whole in a staging folder and swapped in.

``uefi_command`` is qemu's command line for that machine without Incus: where Incus
cannot start VMs (no ``vhost_vsock``) it still shows the image boots to its app
(``chronicle lab guest try NAME --as uefi-vm``). It is not an Incus VM, and no
experiment reports it as one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronicle.errors import LabError
from chronicle.lab.derived import derived_key, made_whole, run_step
from chronicle.lab.guestboot import MEMORY_MIB, QEMU, Booted, running_qemu
from chronicle.lab.guestbuild import GuestBuild, delete_image, image_alias, point_alias
from chronicle.lab.guestdef import GuestDefinition
from chronicle.lab.image import has_alias, metadata
from chronicle.lab.probes import LOOPBACK, free_port

# Bumped when what is derived, or how, changes: every guest's VM disk is derived again.
RECIPE = "2"
INFO = "vm.json"
BOOT_LOADER = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
# OVMF's code and variable store, 4 MiB builds first (Incus's choice where both exist).
FIRMWARE = (("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
            ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"))
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # Linux root (x86-64)
MIB = 2**20
SECTOR = 512
# Room on the ESP beyond its files; and never under 64 MiB, a comfortable FAT16.
ESP_SPARE = 8 * MIB
ESP_MIN = 64 * MIB
LOADER_CONF = "default chronicle.conf\ntimeout 0\neditor no\n"
ENTRY = """\
title Chronicle guest {name}
linux /vmlinuz
initrd /initrd.img
options root=UUID={root_uuid} rw console=ttyS0 quiet panic=-1
"""


def vm_alias(name: str) -> str:
    return f"{image_alias(name)}-vm"


@dataclass(frozen=True)
class VmDisk:
    """A guest's derived VM disk, as its ``vm.json`` records it."""

    folder: Path
    key: str
    root_uuid: str
    skipped: bool = False  # this call found it current and did nothing

    @property
    def disk(self) -> Path:
        return self.folder / "disk.qcow2"

    @property
    def metadata(self) -> Path:
        return self.folder / "metadata.tar"


@dataclass(frozen=True)
class VmImage:
    alias: str
    fingerprint: str
    skipped: bool = False  # the alias already named this disk's image


def vm_dir(build: GuestBuild) -> Path:
    return build.folder / "vm"


def disk_key(build: GuestBuild) -> str:
    return derived_key(RECIPE, build)


def read_disk(build: GuestBuild) -> VmDisk | None:
    folder = vm_dir(build)
    try:
        data = json.loads((folder / INFO).read_text())
        found = VmDisk(folder, data["key"], data["root_uuid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not (found.disk.is_file() and found.metadata.is_file()):
        return None
    return found


def derive(definition: GuestDefinition, build: GuestBuild, say=lambda line: None) -> VmDisk:
    """The guest's UEFI disk and image metadata, derived from its build unless current."""
    key = disk_key(build)
    found = read_disk(build)
    if found is not None and found.key == key:
        return VmDisk(found.folder, found.key, found.root_uuid, skipped=True)

    def make(staging: Path) -> VmDisk:
        root_uuid = _step(definition, "blkid root.ext4", ["blkid", "-p", "-o", "value",
                                                          "-s", "UUID", str(build.disk)],
                          text=True).stdout.strip()
        if not root_uuid:
            raise LabError(f"guest {definition.name}: VM disk: root.ext4 has no UUID",
                           definition.path)
        say(f"{definition.name}: EFI system partition …")
        esp = _esp(definition, build, root_uuid, staging, key)
        say(f"{definition.name}: GPT disk …")
        _disk(definition, build, esp, staging, key)
        esp.unlink()
        (staging / "metadata.tar").write_bytes(_metadata_tar(definition, build))
        (staging / INFO).write_text(json.dumps(
            {"key": key, "root_uuid": root_uuid, "recipe": RECIPE}, indent=1) + "\n")
        return VmDisk(vm_dir(build), key, root_uuid)

    return made_whole(vm_dir(build), make)


def ensure_image(client: Any, definition: GuestDefinition, build: GuestBuild,
                 say=lambda line: None) -> VmImage:
    """The guest's Incus VM image, imported from its derived disk unless the alias
    already names it. A failed import leaves the alias as it was."""
    made = derive(definition, build, say)
    alias = vm_alias(definition.name)
    recorded = made.folder / "image.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        data = json.loads(recorded.read_text())
        if (data["key"] == made.key and has_alias(client, alias)
                and client.images.get_by_alias(alias).fingerprint == data["fingerprint"]):
            return VmImage(alias, data["fingerprint"], skipped=True)
    say(f"{definition.name}: importing {alias} …")
    try:
        with made.metadata.open("rb") as meta, made.disk.open("rb") as disk:
            fingerprint = client.images.create(disk, metadata=meta, public=False,
                                               wait=True, vm=True).fingerprint
    except Exception as exc:  # pylxd's API error: the daemon's own words
        raise LabError(f"guest {definition.name}: importing its VM image: {exc}",
                       definition.path) from None
    try:
        point_alias(client, alias, fingerprint)
    except BaseException:
        delete_image(client, fingerprint)
        raise
    recorded.write_text(json.dumps({"key": made.key, "fingerprint": fingerprint}) + "\n")
    return VmImage(alias, fingerprint)


# -- the steps ------------------------------------------------------------------------


def _step(definition: GuestDefinition, step: str, argv: list[str], **kwargs: Any
          ) -> subprocess.CompletedProcess:
    # mtools works on an image file, not a drive: no checks meant for a floppy.
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    return run_step(definition, f"VM disk: {step}", argv, env=env, **kwargs)


def _ids(key: str, what: str) -> uuid.UUID:
    """A stable identifier for ``what`` of this derivation: the same inputs, the same disk."""
    return uuid.UUID(hashlib.sha256(f"{key}:{what}".encode()).hexdigest()[:32])


def _esp(definition: GuestDefinition, build: GuestBuild, root_uuid: str, staging: Path,
         key: str) -> Path:
    if not BOOT_LOADER.is_file():
        raise LabError(f"guest {definition.name}: VM disk: no {BOOT_LOADER} (Debian's "
                       f"systemd-boot-efi; `chronicle lab setup` installs it)",
                       definition.path)
    kernel = staging / "vmlinuz"
    # The guest's compressed kernel, with its EFI stub: the microVM boots its vmlinux.
    _step(definition, "debugfs dump vmlinuz",
          ["debugfs", "-R", f"dump /boot/vmlinuz-{build.kernel_version} {kernel}",
           str(build.disk)])
    if not kernel.is_file() or kernel.stat().st_size == 0:
        raise LabError(f"guest {definition.name}: VM disk: root.ext4 has no "
                       f"/boot/vmlinuz-{build.kernel_version}", definition.path)
    files = {"EFI/BOOT/BOOTX64.EFI": BOOT_LOADER, "vmlinuz": kernel,
             "initrd.img": build.initrd}
    texts = {"loader/loader.conf": LOADER_CONF,
             "loader/entries/chronicle.conf": ENTRY.format(name=definition.name,
                                                           root_uuid=root_uuid)}
    need = sum(p.stat().st_size for p in files.values()) + ESP_SPARE
    size = max(ESP_MIN, -(-need // MIB) * MIB)
    esp = staging / "esp.img"
    _step(definition, "mkfs.vfat", ["mkfs.vfat", "-C", "-n", "ESP",
                                    "-i", _ids(key, "esp").hex[:8], str(esp),
                                    str(size // 1024)])
    image = ["-i", str(esp)]
    _step(definition, "mmd", ["mmd", *image, "::/EFI", "::/EFI/BOOT", "::/loader",
                              "::/loader/entries"])
    for target, source in files.items():
        _step(definition, f"mcopy {target}", ["mcopy", *image, str(source), f"::/{target}"])
    for target, text in texts.items():
        written = staging / Path(target).name
        written.write_text(text)
        _step(definition, f"mcopy {target}", ["mcopy", *image, str(written), f"::/{target}"])
        written.unlink()
    kernel.unlink()
    return esp


def _disk(definition: GuestDefinition, build: GuestBuild, esp: Path, staging: Path,
          key: str) -> None:
    esp_sectors = esp.stat().st_size // SECTOR
    root_sectors = -(-build.disk.stat().st_size // SECTOR)
    first = MIB // SECTOR
    root_start = first + esp_sectors
    total = (root_start + root_sectors) * SECTOR + MIB  # + the backup GPT
    raw = staging / "disk.raw"
    with raw.open("wb") as out:
        out.truncate(total)
    script = (f"label: gpt\nlabel-id: {_ids(key, 'disk')}\nunit: sectors\n"
              f"start={first}, size={esp_sectors}, type={ESP_TYPE}, "
              f"uuid={_ids(key, 'esp-part')}, name=\"esp\"\n"
              f"start={root_start}, size={root_sectors}, type={ROOT_TYPE}, "
              f"uuid={_ids(key, 'root-part')}, name=\"root\"\n")
    _step(definition, "sfdisk", ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel",
                                 str(raw)], input=script.encode())
    for part, start in ((esp, first), (build.disk, root_start)):
        _step(definition, f"dd {part.name}",
              ["dd", f"if={part}", f"of={raw}", "bs=1M", f"seek={start * SECTOR}",
               "oflag=seek_bytes", "conv=notrunc,sparse", "status=none"])
    _step(definition, "qemu-img convert", ["qemu-img", "convert", "-f", "raw", "-O", "qcow2",
                                           str(raw), str(staging / "disk.qcow2")])
    raw.unlink()


def _metadata_tar(definition: GuestDefinition, build: GuestBuild) -> bytes:
    # Created when its root disk was (Incus refuses an image without a date).
    data = metadata(f"Chronicle guest {definition.name} (VM): {definition.description}",
                    "debian", definition.suite, created=int(build.disk.stat().st_mtime))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("metadata.yaml")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# -- the same machine without Incus ---------------------------------------------------


def firmware() -> tuple[Path, Path]:
    """OVMF's code and variable-store template on this host."""
    for code, variables in FIRMWARE:
        if Path(code).is_file() and Path(variables).is_file():
            return Path(code), Path(variables)
    raise LabError("no OVMF firmware in /usr/share/OVMF (Debian's ovmf; `chronicle lab "
                   "setup` installs it)")


def uefi_command(definition: GuestDefinition, made: VmDisk, variables: Path, port: int,
                 accel: str) -> list[str]:
    """qemu's command line for the machine an Incus VM gets: q35, OVMF (its variables in
    ``variables``, a writable copy), the disk on virtio-scsi (written to a temporary
    file, never the disk), the microVM's memory and CPU count, and the app forwarded to
    127.0.0.1 only."""
    code, _ = firmware()
    cpu = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg", "-cpu", "max"]
    return [
        QEMU, "-M", "q35", *cpu, "-m", str(MEMORY_MIB), "-smp", "1",
        "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
        "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
        "-device", "virtio-scsi-pci,id=scsi",
        "-drive", f"id=root,file={made.disk},format=qcow2,if=none,snapshot=on",
        "-device", "scsi-hd,drive=root,bus=scsi.0",
        "-netdev", f"user,id=net0,hostfwd=tcp:{LOOPBACK}:{port}-:{definition.app.port}",
        "-device", "virtio-net-pci,netdev=net0",
    ]


@contextlib.contextmanager
def running_uefi(definition: GuestDefinition, build: GuestBuild, timeout: float,
                 say=lambda line: None) -> Iterator[Booted]:
    """The guest's VM disk booted by qemu as Incus would, once its app has answered;
    qemu and its copy of the firmware variables gone when the block ends."""
    from chronicle.lab import host
    from chronicle.lab.subjects.qemu import choose_accel

    made = derive(definition, build, say)
    _, template = firmware()
    with tempfile.TemporaryDirectory(prefix=f"chronicle-{definition.name}-ovmf-") as tmp:
        variables = Path(tmp) / template.name
        shutil.copyfile(template, variables)
        port = free_port()
        argv = uefi_command(definition, made, variables, port, choose_accel(host.kvm_kind()))
        with running_qemu(definition, argv, port, timeout, "a UEFI VM") as booted:
            yield booted
