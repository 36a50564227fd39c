"""Build a guest once: one Debian tree from ``mmdebstrap``, two ways to boot it.

From the tree of a :class:`~chronicle.lab.guestdef.GuestDefinition` come

- an Incus image, alias ``chronicle-guest-<name>`` (the tree as ``rootfs/``, systemd as
  init), imported through pylxd;
- a microVM root disk ``root.ext4`` (``mkfs.ext4 -d``: ext4 rather than erofs because
  the app writes — nginx its logs, Rails its SQLite file — and a read-only root would
  need an overlay the container does not have), with the guest's own kernel as a PVH
  ``vmlinux`` and its own ``initrd.img`` (initramfs-tools, virtio modules included).

The same tree goes both ways: same packages, same app, same init. systemd-networkd
takes DHCP on the VM's NIC; ``systemd-networkd-wait-online`` is masked in the tree,
because an Incus container without a NIC would otherwise hold every unit that wants
``network-online.target`` (nginx does) for two minutes.

Layout under ``<lab>/guests/<name>/``: ``vmlinux``, ``initrd.img``, ``root.ext4`` and
``manifest.json`` (the definition's key, the image fingerprint, every package's
version from ``dpkg-query -W``, the build's timings). A build whose key, files and
alias all match is skipped; anything else is built again in a scratch folder beside
it and moved in only when whole, and the alias moves last.
"""

from __future__ import annotations

import io
import json
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chronicle.errors import LabError
from chronicle.lab.guest import extract_vmlinux
from chronicle.lab.guestdef import GuestDefinition, key_line
from chronicle.lab.image import has_alias, metadata
from chronicle.lab.results import atomic_write

# What every guest gets besides its own packages: systemd as init, and the Debian cloud
# kernel (small, virtio built for microVMs) whose vmlinuz and initrd boot the disk.
BASE_PACKAGES = ("systemd-sysv", "linux-image-cloud-amd64")
NETWORK_FILE = "/etc/systemd/network/80-chronicle.network"
NETWORK = "[Match]\nName=e*\n\n[Network]\nDHCP=yes\n"
# Once the app's unit is active, its phases go to the console, the only way out of a
# microVM without a network probe: when init started and when the app's unit became
# active, both on the guest's monotonic clock (the kernel's, from its start, in a VM;
# the host's in a container, which shares it), in microseconds.
PHASES_UNIT = "/etc/systemd/system/chronicle-phases.service"
PHASES_SERVICE = """\
[Unit]
Description=Chronicle: report when init started and when the app became active
After={app}

[Service]
Type=oneshot
StandardOutput=journal+console
ExecStart=/bin/sh -c 'echo "CHRONICLE-PHASES init_us=$(systemctl show -P \
UserspaceTimestampMonotonic) app_us=$(systemctl show -P ActiveEnterTimestampMonotonic {app})"'

[Install]
WantedBy=multi-user.target
"""
# Bumped when what the builder adds changes, so every guest is built again.
RECIPE = "2"
MANIFEST = "manifest.json"
ARTEFACTS = ("vmlinux", "initrd.img", "root.ext4")
# Free room on the root disk beyond the tree: logs, the app's database, apt's lists.
DISK_HEADROOM = 256 * 2**20


def image_alias(name: str) -> str:
    return f"chronicle-guest-{name}"


@dataclass(frozen=True)
class GuestBuild:
    """A finished build, as its manifest records it."""

    name: str
    folder: Path
    key: str
    fingerprint: str
    packages: dict[str, str] = field(hash=False)
    kernel_version: str = ""
    seconds: dict[str, float] = field(default_factory=dict, hash=False)
    skipped: bool = False  # this call found it built and did nothing

    @property
    def alias(self) -> str:
        return image_alias(self.name)

    @property
    def kernel(self) -> Path:
        return self.folder / "vmlinux"

    @property
    def initrd(self) -> Path:
        return self.folder / "initrd.img"

    @property
    def disk(self) -> Path:
        return self.folder / "root.ext4"

    def manifest(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "alias": self.alias,
                "fingerprint": self.fingerprint, "kernel_version": self.kernel_version,
                "packages": self.packages, "seconds": self.seconds}


def build_key(definition: GuestDefinition) -> str:
    return f"{RECIPE}:{definition.key}"


def build_dir(lab: Path, name: str) -> Path:
    return lab / "guests" / name


def read_build(lab: Path, name: str) -> GuestBuild | None:
    """The build recorded for ``name`` with all its files on disk, or None."""
    folder = build_dir(lab, name)
    try:
        data = json.loads((folder / MANIFEST).read_text())
        found = GuestBuild(name=name, folder=folder, key=data["key"],
                           fingerprint=data["fingerprint"], packages=dict(data["packages"]),
                           kernel_version=data["kernel_version"],
                           seconds=dict(data["seconds"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not all((folder / name).is_file() for name in ARTEFACTS):
        return None
    return found


def _alias_target(client: Any, alias: str) -> str | None:
    if not has_alias(client, alias):
        return None
    return client.images.get_by_alias(alias).fingerprint


def current_build(lab: Path, definition: GuestDefinition, client: Any) -> GuestBuild | None:
    """The build of this very definition, when its files and its image are all there."""
    found = read_build(lab, definition.name)
    if found is None or found.key != build_key(definition):
        return None
    if _alias_target(client, found.alias) != found.fingerprint:
        return None
    return found


def build(definition: GuestDefinition, lab: Path, client: Any, mirror: str,
          say=lambda line: None) -> GuestBuild:
    """Build ``definition`` unless the current build is of it; returns the build."""
    found = current_build(lab, definition, client)
    if found is not None:
        return GuestBuild(**{**found.__dict__, "skipped": True})
    folder = build_dir(lab, definition.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{definition.name}-") as tmp:
        scratch = Path(tmp)
        rootfs = scratch / "image" / "rootfs"

        def timed(label: str, action):
            start = time.monotonic()
            say(f"{label} …")
            value = action()
            seconds[label] = round(time.monotonic() - start, 2)
            say(f"{label}: {seconds[label]:.1f} s")
            return value

        timed("mmdebstrap", lambda: debootstrap(definition, rootfs, scratch, mirror))
        packages = package_versions(rootfs)
        kernel_version = timed("kernel", lambda: take_kernel(rootfs, scratch))
        timed("root disk", lambda: make_disk(rootfs, scratch / "root.ext4"))
        image_tar = timed("image tarball", lambda: make_image_tar(definition, scratch))
        fingerprint = timed("image import", lambda: import_image(client, image_tar))
        made = GuestBuild(name=definition.name, folder=folder, key=build_key(definition),
                          fingerprint=fingerprint, packages=packages,
                          kernel_version=kernel_version, seconds=seconds)
        try:
            folder.mkdir(exist_ok=True)
            (folder / MANIFEST).unlink(missing_ok=True)  # no manifest: not a build
            for name in ARTEFACTS:
                (scratch / name).replace(folder / name)
            atomic_write(folder / MANIFEST,
                         (json.dumps(made.manifest(), indent=1, sort_keys=True) + "\n").encode())
            point_alias(client, made.alias, fingerprint)
        except BaseException:
            delete_image(client, fingerprint)
            raise
    return made


# -- the steps ------------------------------------------------------------------------


def overlay_tar(definition: GuestDefinition) -> bytes:
    """The files the definition places, plus the network file, as a tar (owner root)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        def add(target: str, data: bytes, mode: int) -> None:
            info = tarfile.TarInfo("." + target)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))

        add(NETWORK_FILE, NETWORK.encode(), 0o644)
        add("/etc/hostname", f"{definition.name}\n".encode(), 0o644)
        add(PHASES_UNIT, PHASES_SERVICE.format(app=definition.app.service).encode(), 0o644)
        for placed in definition.files:
            if placed.content is not None:
                add(placed.path, placed.content.encode(), placed.mode or 0o644)
            elif placed.source is not None and placed.source.is_dir():
                for path in sorted(placed.source.rglob("*")):
                    if path.is_file():
                        rel = path.relative_to(placed.source).as_posix()
                        add(f"{placed.path}/{rel}", path.read_bytes(),
                            placed.mode or path.stat().st_mode & 0o7777)
            elif placed.source is not None:
                add(placed.path, placed.source.read_bytes(),
                    placed.mode or placed.source.stat().st_mode & 0o7777)
    return out.getvalue()


def mmdebstrap_command(definition: GuestDefinition, rootfs: Path, overlay: Path,
                       mirror: str) -> list[str]:
    def in_tree(command: str) -> str:
        return f'--customize-hook=chroot "$1" sh -ec {shlex.quote(command)}'

    services = " ".join([definition.app.service, "systemd-networkd.service",
                         "chronicle-phases.service"])
    return [
        "mmdebstrap", "--variant=apt", "--mode=root",
        "--include=" + ",".join([*BASE_PACKAGES, *definition.packages]),
        f"--customize-hook=tar-in {overlay} /",
        in_tree("systemctl mask systemd-networkd-wait-online.service"),
        in_tree(f"systemctl enable {services}"),
        *[in_tree(command) for command in definition.run],
        definition.suite, str(rootfs), mirror,
    ]


def debootstrap(definition: GuestDefinition, rootfs: Path, scratch: Path, mirror: str) -> None:
    overlay = scratch / "overlay.tar"
    overlay.write_bytes(overlay_tar(definition))
    rootfs.parent.mkdir(parents=True)
    run = subprocess.run(mmdebstrap_command(definition, rootfs, overlay, mirror),
                         capture_output=True, text=True)
    if run.returncode == 0:
        return
    text = (run.stderr + run.stdout).strip()
    tail = " | ".join(text.splitlines()[-6:])
    text_of = definition.path.read_text()
    for package in definition.packages:
        if f"Unable to locate package {package}" in text or f"'{package}' has no install" in text:
            raise LabError(f"key 'packages': {package!r} is not in Debian {definition.suite}",
                           definition.path, key_line(text_of, "packages"))
    key = "run" if definition.run and "customize" in text else "packages"
    raise LabError(f"mmdebstrap failed building {definition.name}: {tail[-900:]}",
                   definition.path, key_line(text_of, key))


def package_versions(rootfs: Path) -> dict[str, str]:
    run = subprocess.run(["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W",
                          "-f", "${Package}\t${Version}\n"],
                         capture_output=True, text=True, check=True)
    return dict(sorted(line.split("\t", 1) for line in run.stdout.splitlines() if "\t" in line))


def take_kernel(rootfs: Path, scratch: Path) -> str:
    """The tree's kernel as ``vmlinux`` and its initrd beside it; the kernel's version."""
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise LabError("the guest tree has no /boot/vmlinuz-*", rootfs)
    version = kernels[-1].name.removeprefix("vmlinuz-")
    initrd = rootfs / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise LabError(f"the guest tree has no initrd for {version}", rootfs / "boot")
    extract_vmlinux(kernels[-1], scratch / "vmlinux")
    shutil.copyfile(initrd, scratch / "initrd.img")
    return version


def tree_bytes(folder: Path) -> int:
    run = subprocess.run(["du", "-sb", str(folder)], capture_output=True, text=True, check=True)
    return int(run.stdout.split()[0])


def make_disk(rootfs: Path, disk: Path) -> None:
    size = (tree_bytes(rootfs) * 5 // 4 + DISK_HEADROOM) // 2**20 + 1
    with disk.open("wb") as out:
        out.truncate(size * 2**20)
    run = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(disk)],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise LabError(f"mkfs.ext4 failed: {run.stderr.strip()[-500:]}", disk)


def make_image_tar(definition: GuestDefinition, scratch: Path) -> Path:
    image = scratch / "image"
    (image / "metadata.yaml").write_bytes(metadata(
        f"Chronicle guest {definition.name}: {definition.description}", "debian",
        definition.suite, int(time.time())))
    out = scratch / "image.tar"
    subprocess.run(["tar", "-C", str(image), "--numeric-owner", "--xattrs",
                    "--xattrs-include=*", "-cf", str(out), "metadata.yaml", "rootfs"],
                   check=True, capture_output=True)
    return out


def import_image(client: Any, tarball: Path) -> str:
    with tarball.open("rb") as data:
        image = client.images.create(data, public=False, wait=True)
    return image.fingerprint


def delete_image(client: Any, fingerprint: str) -> None:
    from pylxd.exceptions import NotFound

    try:
        client.images.get(fingerprint).delete(wait=True)
    except NotFound:
        pass


def point_alias(client: Any, alias: str, fingerprint: str) -> None:
    """Move ``alias`` to ``fingerprint`` and delete the image it pointed at before."""
    old = _alias_target(client, alias)
    if old == fingerprint:
        return
    if old is not None:
        client.api.images.aliases[alias].delete()
    client.images.get(fingerprint).add_alias(alias, "Chronicle lab guest")
    if old is not None:
        delete_image(client, old)
