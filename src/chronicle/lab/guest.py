"""Guest assets for microVMs: an uncompressed PVH kernel and a busybox initramfs.

Contract (subjects code against this):

- ``GuestAssets(kernel, initrd, modules, kernel_version)``: ``kernel`` is the ELF
  ``vmlinux`` (boot it with ``-kernel``; PVH entry, no in-guest decompression),
  ``initrd`` the gzip'd newc cpio with the default ``/init`` (see
  ``chronicle.lab.initramfs``), ``modules`` the virtio module names it carries, in load
  order. ``assets.module_files`` maps each to its uncompressed ``.ko`` so a variant can be
  built with ``build_initramfs(dest, busybox=..., init_script=..., modules=...)``.
- ``guest_assets(lab)`` only reads what ``chronicle lab setup`` made (``LabError``
  otherwise); ``ensure_guest_assets(lab)`` makes it: downloads the Debian kernel package
  with ``apt-get download`` (never touching /boot), extracts vmlinux and the modules, and
  builds the initramfs. Idempotent: a kernel once fetched is kept, the initramfs is
  rebuilt only when its inputs (busybox, /init, modules) change.

Layout under ``lab/guest/``: ``vmlinux-<ver>``, ``initrd-<hash>.cpio.gz``,
``modules/<name>.ko``, ``assets.json`` (the manifest ``guest_assets`` reads).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import re
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from chronicle.errors import LabError
from chronicle.lab.initramfs import DEFAULT_INIT, MARKER_RE, build_initramfs
from chronicle.swap import atomic_write

__all__ = [
    "GuestAssets", "MARKER_RE", "NET_MODULES", "build_initramfs", "busybox_static",
    "ensure_guest_assets", "extract_vmlinux", "guest_assets",
]

# What `chronicle.mode=http` needs on a Debian kernel, where virtio is all modules and
# microvm's virtio-mmio devices are found through ACPI. Dependencies are added from the
# modules' own `depends=` records.
NET_MODULES = ("virtio_mmio", "virtio_net")
FLAVOURS = ("cloud-amd64", "amd64")
MANIFEST = "assets.json"

# Compressed payloads a bzImage may carry, by magic. xz and gzip decode in-process.
_MAGICS = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x02\x21\x4c\x18", "lz4"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x1f\x8b\x08", "gzip"),
)


@dataclass(frozen=True)
class GuestAssets:
    kernel: Path
    initrd: Path
    modules: list[str]
    kernel_version: str = ""

    @property
    def module_files(self) -> dict[str, Path]:
        folder = self.kernel.parent / "modules"
        return {name: folder / f"{name}.ko" for name in self.modules}


def guest_dir(lab: Path) -> Path:
    return lab / "guest"


def guest_assets(lab: Path) -> GuestAssets:
    """The assets ``chronicle lab setup`` built; a LabError naming the fix if any is missing."""
    manifest = guest_dir(lab) / MANIFEST
    try:
        data = json.loads(manifest.read_text())
        assets = GuestAssets(
            kernel=guest_dir(lab) / data["kernel"],
            initrd=guest_dir(lab) / data["initrd"],
            modules=list(data["modules"]),
            kernel_version=data["kernel_version"],
        )
    except (OSError, ValueError, KeyError) as exc:
        raise LabError(f"guest assets missing ({exc}): run `chronicle lab setup`",
                       manifest) from exc
    for path in (assets.kernel, assets.initrd, *assets.module_files.values()):
        if not path.is_file():
            raise LabError("guest asset missing: run `chronicle lab setup`", path)
    return assets


def busybox_static() -> Path:
    """Debian's busybox-static binary (a dynamic busybox cannot run in the bare initramfs)."""
    for candidate in (Path("/bin/busybox"), Path("/usr/bin/busybox")):
        if candidate.is_file() and b"ld-linux" not in candidate.read_bytes()[:4096]:
            return candidate
    raise LabError("no static busybox: run `chronicle lab setup` (installs busybox-static)")


def _decompress(kind: str, blob: bytes) -> bytes:
    if kind == "xz":
        # The decompressor stops at the end of the stream; trailing bzImage bytes are fine.
        return lzma.LZMADecompressor().decompress(blob)
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob)
    tool = shutil.which(kind)
    if tool is None:
        return b""
    # lz4/zstd exit non-zero on the trailing data after the stream: expected, output is whole.
    run = subprocess.run([tool, "-dc"], input=blob, capture_output=True)
    return run.stdout


def extract_vmlinux(bzimage: Path, dest: Path) -> Path:
    """Write the ELF kernel packed inside ``bzimage`` to ``dest`` (PVH-bootable)."""
    image = bzimage.read_bytes()
    for magic, kind in _MAGICS:
        start = image.find(magic)
        while start != -1:
            try:
                elf = _decompress(kind, image[start:])
            except (lzma.LZMAError, zlib.error):
                elf = b""
            if elf.startswith(b"\x7fELF"):
                atomic_write(dest, elf)
                return dest
            start = image.find(magic, start + 1)
    raise LabError("no compressed ELF kernel found in the bzImage", bzimage)


def _module_depends(ko: bytes) -> list[str]:
    # `.modinfo` holds NUL-separated key=value strings; depends= lists loadable modules.
    found = re.search(rb"(?:^|\0)depends=([^\0]*)\0", ko)
    if not found or not found.group(1):
        return []
    return [d.decode().replace("-", "_") for d in found.group(1).split(b",")]


def _read_module(path: Path) -> bytes:
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes())
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True).stdout
    return path.read_bytes()


def module_closure(moddir: Path, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """Uncompressed ``.ko`` bytes of ``wanted`` and their dependencies, dependencies first.

    Modules built into the kernel (``modules.builtin``) are left out: nothing to load.
    """
    index = {}
    for path in (moddir / "kernel").rglob("*.ko*"):
        index[path.name.split(".ko")[0].replace("-", "_")] = path
    builtin = moddir / "modules.builtin"
    built_in = set()
    if builtin.is_file():
        built_in = {Path(line).name.split(".ko")[0].replace("-", "_")
                    for line in builtin.read_text().split()}
    ordered: dict[str, bytes] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in ordered or name in built_in:
            return
        if name not in index:
            raise LabError(f"kernel module {name} not found (needed by {' -> '.join(chain)})",
                           moddir)
        blob = _read_module(index[name])
        for dep in _module_depends(blob):
            visit(dep, (*chain, name))
        ordered[name] = blob

    for name in wanted:
        visit(name, (name,))
    return ordered


def kernel_package(flavour: str) -> str | None:
    """The versioned package the ``linux-image-<flavour>`` meta-package points at."""
    run = subprocess.run(["apt-cache", "depends", f"linux-image-{flavour}"],
                         capture_output=True, text=True)
    found = re.search(rf"Depends: (linux-image-[0-9][^\s]*-{flavour})\b", run.stdout)
    return found.group(1) if found else None


def fetch_kernel(folder: Path) -> tuple[str, Path, Path]:
    """Download and unpack a Debian kernel package: (version, vmlinux, modules folder)."""
    for flavour in FLAVOURS:
        package = kernel_package(flavour)
        if package:
            break
    else:
        raise LabError("no linux-image-cloud-amd64 or linux-image-amd64 in apt: run apt-get update")
    version = package.removeprefix("linux-image-")
    with tempfile.TemporaryDirectory(prefix="chronicle-kernel-") as tmp:
        got = subprocess.run(["apt-get", "download", "-q", package], cwd=tmp,
                             capture_output=True, text=True)
        debs = list(Path(tmp).glob("*.deb"))
        if got.returncode != 0 or not debs:
            raise LabError(f"apt-get download {package} failed: {got.stderr.strip()}")
        root = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
        vmlinux = extract_vmlinux(root / "boot" / f"vmlinuz-{version}",
                                  folder / f"vmlinux-{version}")
        moddir = next(p for p in (root / "lib" / "modules" / version,
                                  root / "usr" / "lib" / "modules" / version) if p.is_dir())
        modules = module_closure(moddir, NET_MODULES)
    mod_folder = folder / "modules"
    mod_folder.mkdir(exist_ok=True)
    for name, blob in modules.items():
        (mod_folder / f"{name}.ko").write_bytes(blob)
    atomic_write(folder / "kernel.json", json.dumps(
        {"kernel": vmlinux.name, "kernel_version": version, "modules": list(modules)},
        indent=1).encode())
    return version, vmlinux, mod_folder


def _inputs_hash(busybox: Path, modules: dict[str, Path]) -> str:
    h = hashlib.sha256(DEFAULT_INIT.encode())
    h.update(busybox.read_bytes())
    for name, path in modules.items():
        h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def ensure_guest_assets(lab: Path) -> GuestAssets:
    """Make (or keep) the kernel and default initramfs; returns what ``guest_assets`` will."""
    folder = guest_dir(lab)
    folder.mkdir(parents=True, exist_ok=True)
    kernel_info = folder / "kernel.json"
    if kernel_info.is_file():
        info = json.loads(kernel_info.read_text())
        version, vmlinux = info["kernel_version"], folder / info["kernel"]
        names = info["modules"]
        have_modules = all((folder / "modules" / f"{n}.ko").is_file() for n in names)
        if not vmlinux.is_file() or not have_modules:
            kernel_info.unlink()
            return ensure_guest_assets(lab)
    else:
        version, vmlinux, _ = fetch_kernel(folder)
        names = json.loads(kernel_info.read_text())["modules"]
    modules = {n: folder / "modules" / f"{n}.ko" for n in names}
    busybox = busybox_static()
    initrd = folder / f"initrd-{_inputs_hash(busybox, modules)}.cpio.gz"
    if not initrd.is_file():
        build_initramfs(initrd, busybox=busybox, modules=modules)
    for old in folder.glob("initrd-*.cpio.gz"):
        if old != initrd:
            old.unlink()
    manifest = {"kernel": vmlinux.name, "initrd": initrd.name, "modules": names,
                "kernel_version": version}
    path = folder / MANIFEST
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text() != text:
        atomic_write(path, text.encode())
    return guest_assets(lab)
