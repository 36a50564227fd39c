"""The other roots a built guest's microVM could boot from, derived from its ext4 disk,
and the microVM that boots each — so ``root-format`` can measure which serves the app
sooner and what each costs, rather than argue it.

From ``root.ext4``, mounted read-only on a loop device (``debugfs rdump`` would drop
the setuid bits of ``su`` and ``passwd``, the device nodes in ``/dev``, the hard links
and the ACLs on ``/var/log/journal``), come, under ``<lab>/guests/<name>/roots/``:

- ``root.erofs``: ``mkfs.erofs`` of the same tree, uncompressed like the ext4 disk, on
  virtio-blk read-only. The app writes (nginx its logs, Rails its SQLite file), so
  ``initrd-erofs.img`` is the guest's own ``initrd.img`` with one more cpio appended
  (the kernel unpacks concatenated archives in order): the erofs and overlay modules
  from the tree, loaded in ``local-top``, and a ``local-bottom`` script that moves the
  erofs root aside and mounts an overlay with a tmpfs upper layer in its place before
  systemd starts — what microVM setups do with a read-only store. The script says what
  it mounted on the console (``CHRONICLE-ROOT``), and a boot without that line fails.
- ``root.cpio``: the whole tree as the kernel's initramfs (``rdinit=/sbin/init``, no
  disk), uncompressed because under TCG the guest's decompressor would cost more than
  the bytes it saves. The tree then lives in the guest's RAM, so that boot gets the
  memory the others get plus three times the archive: the archive stays in RAM until
  it is unpacked, and the kernel's root tmpfs may fill only half of what is left (with
  two times, Rails's tree did not fit: "Initramfs unpacking failed: write error").

``lost+found`` is ext4's, not the tree's: left out of both. cpio's ``newc`` format has
no extended attributes, so the initramfs tree lacks the journal folder's ACLs.

The derived files are keyed by the guest's build (key, image fingerprint) and the
identity of its ``root.ext4`` and ``initrd.img`` (size, modification time), plus
``RECIPE``: a rebuilt guest or a new recipe derives them again, nothing else does. They
are made whole in a staging folder and exchanged in (``swap``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronicle.errors import LabError
from chronicle.lab.derived import derived_key, made_whole, run_step
from chronicle.lab.guestboot import MEMORY_MIB, microvm_command
from chronicle.lab.guestbuild import GuestBuild
from chronicle.lab.guestdef import GuestDefinition
from chronicle.lab.subjects.base import SubjectError, Timings
from chronicle.lab.subjects.guests import GuestMicrovm
from chronicle.lab.subjects.vmm import VmmProcess

FORMATS = ("ext4", "erofs", "initramfs")
# Bumped when what is derived, or how, changes: every guest's roots are derived again.
RECIPE = "2"
INFO = "roots.json"
MODULES = ("erofs", "overlay")
LOWER = "/run/chronicle-root/lower"
RW = "/run/chronicle-root/rw"
# ``dash`` builtins only: the initramfs has klibc's tools, no grep.
LOAD_MODULES = """\
#!/bin/sh
# Chronicle: the modules the erofs root and its overlay need, by path (the initramfs's
# modules.dep does not know them).
case "$1" in prereqs) exit 0 ;; esac
for ko in {modules}; do
	name=${{ko##*/}}; name=${{name%.ko}}
	loaded=n
	while read -r mod rest; do [ "$mod" = "$name" ] && loaded=y; done < /proc/modules
	[ "$loaded" = y ] || insmod "/chronicle-root/$ko"
done
"""
OVERLAY = f"""\
#!/bin/sh
# Chronicle: the read-only root moves aside and an overlay with a tmpfs upper layer
# takes its place, so the app can write; then what is mounted goes to the console.
case "$1" in prereqs) exit 0 ;; esac
mkdir -p {LOWER} {RW}
mount -n -o move "$rootmnt" {LOWER}
mount -n -t tmpfs -o mode=0755 tmpfs {RW}
mkdir {RW}/upper {RW}/work
mount -n -t overlay -o lowerdir={LOWER},upperdir={RW}/upper,workdir={RW}/work \\
	overlay "$rootmnt" || panic "Chronicle: cannot mount the overlay on the erofs root"
while read -r dev dir type opts rest; do
	case "$dir" in "$rootmnt"|{LOWER}) echo "CHRONICLE-ROOT $dir $type ${{opts%%,*}}" ;; esac
done < /proc/mounts
"""
ORDER_LINE = '{script} "$@"\n[ -e /conf/param.conf ] && . /conf/param.conf\n'


@dataclass(frozen=True)
class Roots:
    """A guest's derived roots, as their ``roots.json`` records them."""

    folder: Path
    key: str
    tree_bytes: int
    skipped: bool = False  # this call found them current and did nothing

    @property
    def erofs(self) -> Path:
        return self.folder / "root.erofs"

    @property
    def erofs_initrd(self) -> Path:
        return self.folder / "initrd-erofs.img"

    @property
    def cpio(self) -> Path:
        return self.folder / "root.cpio"


def roots_dir(build: GuestBuild) -> Path:
    return build.folder / "roots"


def roots_key(build: GuestBuild) -> str:
    return derived_key(RECIPE, build)


def read_roots(build: GuestBuild) -> Roots | None:
    folder = roots_dir(build)
    try:
        data = json.loads((folder / INFO).read_text())
        found = Roots(folder, data["key"], int(data["tree_bytes"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not all(p.is_file() for p in (found.erofs, found.erofs_initrd, found.cpio)):
        return None
    return found


def derive(definition: GuestDefinition, build: GuestBuild, say=lambda line: None) -> Roots:
    """The guest's erofs and initramfs roots, derived from its ext4 disk unless current."""
    key = roots_key(build)
    found = read_roots(build)
    if found is not None and found.key == key:
        return Roots(found.folder, found.key, found.tree_bytes, skipped=True)

    def make(staging: Path) -> Roots:
        with _mounted_read_only(definition, build.disk) as tree:
            say(f"{definition.name}: mkfs.erofs …")
            run_step(definition, "mkfs.erofs", ["mkfs.erofs", "--quiet",
                                                "--exclude-path=lost+found",
                                                str(staging / "root.erofs"), str(tree)])
            say(f"{definition.name}: initrd for the erofs root …")
            _erofs_initrd(definition, build, tree, staging)
            say(f"{definition.name}: the tree as an initramfs …")
            _tree_cpio(definition, tree, staging / "root.cpio")
            tree_bytes = _tree_bytes(definition, tree)
        (staging / INFO).write_text(json.dumps(
            {"key": key, "tree_bytes": tree_bytes, "recipe": RECIPE}, indent=1) + "\n")
        return Roots(roots_dir(build), key, tree_bytes)

    return made_whole(roots_dir(build), make)


# -- the steps ------------------------------------------------------------------------


@contextlib.contextmanager
def _mounted_read_only(definition: GuestDefinition, disk: Path) -> Iterator[Path]:
    # Outside the staging folder, so that nothing ever deletes through a live mount.
    point = Path(tempfile.mkdtemp(prefix=f"chronicle-{definition.name}-ext4-"))
    try:
        # noload: a read-only mount that never replays (writes) the journal.
        run_step(definition, "mount root.ext4", ["mount", "-o", "ro,loop,noload", str(disk),
                                                 str(point)])
        try:
            yield point
        finally:
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)
    finally:
        with contextlib.suppress(OSError):
            point.rmdir()  # never rmtree: it could still be a mount


def _module_files(definition: GuestDefinition, tree: Path, version: str) -> list[str]:
    """The ``.ko`` files of ``MODULES`` and what they depend on, dependencies first,
    from the tree's ``modules.dep``; [] for a module built into the kernel."""
    base = tree / "lib" / "modules" / version
    try:
        deps = dict(line.split(":", 1) for line in (base / "modules.dep").read_text()
                    .splitlines() if ":" in line)
        builtin = (base / "modules.builtin").read_text().split()
    except OSError as exc:
        raise LabError(f"guest {definition.name}: initrd for erofs: the tree has no "
                       f"modules.dep for kernel {version}: {exc}", definition.path) from None
    ordered: list[str] = []

    def add(path: str) -> None:
        for dep in deps[path].split():
            add(dep)
        if path not in ordered:
            ordered.append(path)

    for module in MODULES:
        found = [p for p in deps if Path(p).name == f"{module}.ko"]
        if found:
            add(found[0])
        elif not any(Path(p).name == f"{module}.ko" for p in builtin):
            raise LabError(f"guest {definition.name}: initrd for erofs: kernel {version} "
                           f"has no {module} module", definition.path)
    return ordered


def _erofs_initrd(definition: GuestDefinition, build: GuestBuild, tree: Path,
                  staging: Path) -> None:
    extra = staging / "initrd-extra"
    modules = _module_files(definition, tree, build.kernel_version)
    (extra / "chronicle-root").mkdir(parents=True)
    for path in modules:
        try:
            shutil.copyfile(tree / "lib" / "modules" / build.kernel_version / path,
                            extra / "chronicle-root" / Path(path).name)
        except OSError as exc:
            raise LabError(f"guest {definition.name}: initrd for erofs: {exc}",
                           definition.path) from None
    scripts = {
        "local-top/chronicle-root-modules": LOAD_MODULES.format(
            modules=" ".join(Path(p).name for p in modules)),
        "local-bottom/chronicle-root-overlay": OVERLAY,
    }
    for name, text in scripts.items():
        script = extra / "scripts" / name
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(text)
        script.chmod(0o755)
        # initramfs-tools runs a folder's scripts through its ORDER file alone, and the
        # guest's initrd has none for these two folders (``_no_order`` checks).
        (script.parent / "ORDER").write_text(ORDER_LINE.format(script=f"/scripts/{name}"))
    _no_order(definition, build.initrd, [f"scripts/{n.split('/')[0]}/ORDER" for n in scripts])
    archive = run_step(definition, "initrd for erofs: cpio", _CPIO, cwd=extra,
                       input=_listing(extra)).stdout
    with (staging / "initrd-erofs.img").open("wb") as out:
        with build.initrd.open("rb") as original:
            shutil.copyfileobj(original, out)
        # The kernel takes an uncompressed archive only at an offset that is a multiple
        # of 4, and skips zeros between archives.
        out.write(bytes(-out.tell() % 4))
        out.write(archive)
    shutil.rmtree(extra)


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CPIO = ["cpio", "--null", "--create", "--format=newc", "--reproducible", "--quiet"]


def _listing(folder: Path) -> bytes:
    """``.`` and every path under ``folder`` but ext4's ``lost+found``, relative and
    sorted (the same tree, the same archive), NUL-separated: cpio's input."""
    paths = [b"."]
    for top, dirs, files in os.walk(folder):  # symbolic links are not followed
        if top == str(folder) and "lost+found" in dirs:
            dirs.remove("lost+found")
        rel = os.path.relpath(top, folder)
        paths += [os.fsencode(os.path.normpath(os.path.join(rel, n))) for n in dirs + files]
    return b"".join(p + b"\0" for p in sorted(paths))


def _no_order(definition: GuestDefinition, initrd: Path, orders: list[str]) -> None:
    """Refuse an initrd that has its own ORDER for a folder ours would replace."""
    with initrd.open("rb") as data:
        magic = data.read(4)
    tool = "gzip" if magic[:2] == b"\x1f\x8b" else "zstd" if magic == ZSTD_MAGIC else None
    if tool is None:
        raise LabError(f"guest {definition.name}: initrd for erofs: {initrd.name} is "
                       f"neither gzip nor zstd (magic {magic.hex()})", definition.path)
    with initrd.open("rb") as data:
        unpacked = run_step(definition, f"initrd for erofs: {tool} -dc", [tool, "-dc"],
                            stdin=data).stdout
    listing = run_step(definition, "initrd for erofs: cpio -t", ["cpio", "-t", "--quiet"],
                       input=unpacked).stdout.decode(errors="replace").split()
    clash = sorted(set(orders) & set(listing))
    if clash:
        raise LabError(f"guest {definition.name}: initrd for erofs: {initrd.name} already "
                       f"has {', '.join(clash)}: merging it is not done", definition.path)


def _tree_cpio(definition: GuestDefinition, tree: Path, out: Path) -> None:
    with out.open("wb") as archive:
        run_step(definition, "initramfs: cpio", _CPIO, cwd=tree, input=_listing(tree),
                 stdout=archive)


def _tree_bytes(definition: GuestDefinition, tree: Path) -> int:
    run = run_step(definition, "du", ["du", "-sb", "--exclude=./lost+found", "."], cwd=tree,
                   text=True)
    return int(run.stdout.split()[0])


# -- booting each format ----------------------------------------------------------------


@dataclass(frozen=True)
class RootFormat:
    """How the microVM boots one format: what replaces the ext4 disk's parts of
    ``guestboot.microvm_command``'s command line, and what it boots from."""

    name: str
    root: str  # for the facts
    initrd: Path
    disk: Path | None  # on virtio-blk; None: no disk
    drive_options: str
    kernel_root: str  # replaces "root=/dev/vda rw" on the kernel's command line
    memory_mib: int
    console_proof: tuple[bytes, ...] = ()  # lines the boot must print

    def files(self, build: GuestBuild) -> list[Path]:
        return [build.kernel, self.initrd, *([self.disk] if self.disk else [])]

    def root_bytes(self) -> tuple[int, int]:
        """The root's own file: its size, and what it takes on the host's disk (an ext4
        image is sparse: its free room costs no blocks until the guest writes)."""
        info = (self.disk or self.initrd).stat()
        return info.st_size, info.st_blocks * 512


def root_format(name: str, build: GuestBuild, roots: Roots) -> RootFormat:
    if name == "ext4":
        return RootFormat("ext4", "ext4 on virtio-blk", build.initrd, build.disk,
                          "snapshot=on", "root=/dev/vda rw", MEMORY_MIB)
    if name == "erofs":
        return RootFormat("erofs", "erofs on virtio-blk, tmpfs overlay", roots.erofs_initrd,
                          roots.erofs, "readonly=on", "root=/dev/vda rootfstype=erofs ro",
                          MEMORY_MIB, (b"CHRONICLE-ROOT /root overlay rw",
                                       f"CHRONICLE-ROOT {LOWER} erofs ro".encode()))
    if name == "initramfs":
        archive_mib = -(-roots.cpio.stat().st_size // 2**20)
        memory = -(-(MEMORY_MIB + 3 * archive_mib) // 64) * 64
        return RootFormat("initramfs", "the tree as the initramfs, no disk", roots.cpio,
                          None, "", "rdinit=/sbin/init", memory)
    raise ValueError(f"unknown root format {name!r}; known: {', '.join(FORMATS)}")


def format_command(base: list[str], build: GuestBuild, fmt: RootFormat) -> list[str]:
    """``guestboot.microvm_command``'s qemu command line with the root swapped: the same
    machine, kernel, CPU and network, so the formats differ by their root alone. Edited
    rather than written again so that a change there reaches every format."""
    argv = list(base)

    def value_after(flag: str) -> int:
        return argv.index(flag) + 1

    argv[value_after("-m")] = str(fmt.memory_mib)
    argv[value_after("-initrd")] = str(fmt.initrd)
    append = value_after("-append")
    assert "root=/dev/vda rw" in argv[append], argv[append]
    argv[append] = argv[append].replace("root=/dev/vda rw", fmt.kernel_root)
    drive = value_after("-drive")
    device = argv.index("virtio-blk-device,drive=root")
    assert argv[drive].startswith(f"id=root,file={build.disk},"), argv[drive]
    if fmt.disk is None:
        del argv[device - 1:device + 1]
        del argv[drive - 1:drive + 1]
    else:
        argv[drive] = (f"id=root,file={fmt.disk},format=raw,if=none,{fmt.drive_options}")
    return argv


class FormatMicrovm(GuestMicrovm):
    """The guest as ``GuestMicrovm`` boots it, from one of ``FORMATS``."""

    def __init__(self, definition: GuestDefinition, build: GuestBuild, fmt: RootFormat,
                 accel: str, tsc_khz: int | None):
        from chronicle.lab.probes import free_port

        self.definition, self.build, self.accel, self.format = definition, build, accel, fmt
        self.name = f"{fmt.name}/{definition.name}"  # errors say which boot failed
        port = free_port()
        argv = format_command(microvm_command(definition, build, port, accel, tsc_khz),
                              build, fmt)
        VmmProcess.__init__(self, argv, disk_files=fmt.files(build), http_port=port)

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), "root": self.format.root, "root_format": self.format.name,
                "memory_mib": self.format.memory_mib}

    def wait_booted(self, timeout: float) -> Timings:
        timings = super().wait_booted(timeout)
        assert self.watch is not None
        missing = [line.decode() for line in self.format.console_proof
                   if not self.watch.find("serial", re_line(line))]
        if missing:
            raise SubjectError(f"{self.name}: the app answered but the console never "
                               f"said {missing}: not the root this boot should have had")
        return timings


def re_line(text: bytes) -> re.Pattern[bytes]:
    """A whole console line starting with ``text``'s bytes."""
    return re.compile(re.escape(text) + rb"[\r\n]")

