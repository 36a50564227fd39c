"""A busybox initramfs for microVM guests, written in pure Python (no root, no cpio binary).

The archive is the kernel's ``newc`` cpio format, gzip-compressed, byte-for-byte
reproducible (mtimes 0, inode numbers in order, gzip header without a time stamp), so its
hash is a fair cache key and part of an experiment's inputs.

Contract for the default ``/init`` (``DEFAULT_INIT``), driven by the kernel command line:

- ``chronicle.mode=marker`` (the default): mount proc/sys/dev, print
  ``CHRONICLE-BOOTED uptime=<first field of /proc/uptime>`` — parse it with
  ``MARKER_RE`` — then end the VM with ``reboot -f`` (boot qemu with ``reboot=t`` on the
  kernel command line and ``-no-reboot``: qemu exits), or stay up with ``chronicle.idle=1``.
- ``chronicle.mode=http``: load the virtio modules listed in ``/lib/modules/load-order``
  (virtio-mmio, virtio-net and their dependencies), configure ``eth0`` as 10.0.2.15/24
  with 10.0.2.2 as gateway (qemu's user-mode network), start ``httpd -p 80 -h /www``,
  then print the marker and stay up. The page says ``chronicle guest``.
"""

from __future__ import annotations

import gzip
import io
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The line end is part of the marker: a partial read must not yield a truncated number.
MARKER_RE = re.compile(rb"CHRONICLE-BOOTED uptime=([0-9.]+)\r?\n")
INDEX_HTML = b"<!doctype html><title>chronicle guest</title><p>chronicle guest</p>\n"

# Only the applets /init calls: a symlink each is cheaper under TCG than `busybox --install`.
APPLETS = (
    "sh", "mount", "mkdir", "cat", "echo", "sleep", "reboot", "insmod", "ip", "httpd",
    "ls", "dmesg", "ps", "kill",
)

DEFAULT_INIT = r"""#!/bin/sh
# Chronicle guest init: report boot, then end the VM or serve HTTP (see chronicle.lab.initramfs).
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mode=marker
idle=0
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        chronicle.mode=*) mode="${arg#chronicle.mode=}" ;;
        chronicle.idle=*) idle="${arg#chronicle.idle=}" ;;
    esac
done
if [ "$mode" = http ]; then
    if [ -f /lib/modules/load-order ]; then
        for m in $(cat /lib/modules/load-order); do
            insmod "/lib/modules/$m.ko" || echo "CHRONICLE-ERROR insmod $m"
        done
    fi
    ip link set lo up
    n=0
    # virtio-mmio probes asynchronously; give eth0 a moment to appear.
    while ! ip link set eth0 up 2>/dev/null; do
        n=$((n + 1))
        [ "$n" -gt 200 ] && { echo "CHRONICLE-ERROR no eth0"; break; }
        sleep 0.05
    done
    ip addr add 10.0.2.15/24 dev eth0
    ip route add default via 10.0.2.2
    httpd -p 80 -h /www
    idle=1
fi
read up rest < /proc/uptime
echo "CHRONICLE-BOOTED uptime=$up"
if [ "$idle" = 1 ]; then
    while :; do sleep 3600; done
fi
reboot -f
"""


@dataclass(frozen=True)
class Entry:
    """One archive member: a directory, regular file, symlink or device node."""

    path: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


def _header(ino: int, entry: Entry) -> bytes:
    name = entry.path.encode() + b"\0"
    fields = (
        ino, entry.mode, 0, 0, 2 if stat.S_ISDIR(entry.mode) else 1, 0, len(entry.data),
        0, 0, entry.rdev[0], entry.rdev[1], len(name), 0,
    )
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name
    return head + b"\0" * (-len(head) % 4)


def write_cpio(entries: list[Entry]) -> bytes:
    """The ``newc`` archive of ``entries``, in the given order, with its trailer."""
    out = io.BytesIO()
    for ino, entry in enumerate(entries, start=1):
        out.write(_header(ino, entry))
        out.write(entry.data)
        out.write(b"\0" * (-len(entry.data) % 4))
    out.write(_header(0, Entry("TRAILER!!!", 0)))
    # The kernel accepts any length, but cpio tools expect 512-byte blocks.
    out.write(b"\0" * (-out.tell() % 512))
    return out.getvalue()


def read_cpio(data: bytes) -> list[Entry]:
    """Parse a ``newc`` archive (for tests and for checking what we built)."""
    entries, pos = [], 0
    while True:
        if data[pos:pos + 6] != b"070701":
            raise ValueError(f"bad cpio magic at offset {pos}")
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        name_start = pos + 110
        name = data[name_start:name_start + namesize - 1].decode()
        pos = name_start + namesize
        pos += -pos % 4
        if name == "TRAILER!!!":
            return entries
        entries.append(Entry(name, f[1], data[pos:pos + filesize], (f[9], f[10])))
        pos += filesize
        pos += -pos % 4


def _dir(path: str) -> Entry:
    return Entry(path, stat.S_IFDIR | 0o755)


def _file(path: str, data: bytes, perm: int = 0o644) -> Entry:
    return Entry(path, stat.S_IFREG | perm, data)


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def initramfs_entries(
    *,
    busybox: bytes,
    init_script: str,
    modules: Mapping[str, bytes],
    extra_files: Mapping[str, bytes],
) -> list[Entry]:
    """Every member of the initramfs, directories first, in a stable order."""
    entries = [_dir(d) for d in ("bin", "dev", "etc", "lib", "lib/modules", "proc", "sys",
                                 "tmp", "www")]
    # Without dev/console the kernel opens no stdin/stdout for /init: it runs, silently.
    entries.append(Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)))
    entries.append(_file("bin/busybox", busybox, 0o755))
    entries += [Entry(f"bin/{a}", stat.S_IFLNK | 0o777, b"busybox") for a in APPLETS]
    entries.append(_file("init", init_script.encode(), 0o755))
    entries.append(_file("www/index.html", INDEX_HTML))
    for name, blob in modules.items():
        entries.append(_file(f"lib/modules/{name}.ko", blob))
    if modules:
        entries.append(_file("lib/modules/load-order", "".join(f"{m}\n" for m in modules).encode()))
    known = {e.path for e in entries}
    for path, blob in sorted(extra_files.items()):
        path = path.lstrip("/")
        for parent in _parents(path):
            if parent not in known:
                entries.append(_dir(parent))
                known.add(parent)
        entries = [e for e in entries if e.path != path]
        entries.append(_file(path, blob, 0o755 if blob.startswith(b"#!") else 0o644))
    return entries


def build_initramfs(
    dest: Path,
    *,
    busybox: Path,
    init_script: str = DEFAULT_INIT,
    modules: Mapping[str, Path] | None = None,
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a gzip'd newc initramfs to ``dest``: busybox, ``/init``, kernel modules, extras.

    ``modules`` maps module name to an uncompressed ``.ko``, in load order (dependencies
    first); they land in ``/lib/modules/<name>.ko`` and ``/lib/modules/load-order``.
    ``extra_files`` maps archive paths to contents (a ``#!`` file is made executable)
    and may replace a default such as ``www/index.html``.
    """
    archive = write_cpio(initramfs_entries(
        busybox=busybox.read_bytes(),
        init_script=init_script,
        modules={name: Path(p).read_bytes() for name, p in (modules or {}).items()},
        extra_files=extra_files or {},
    ))
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(archive)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(packed.getvalue())
    tmp.replace(dest)
    return dest
