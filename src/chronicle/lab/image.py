"""Incus images built locally (no image server is reachable): busybox, and Debian+systemd.

Contract:

- Alias ``chronicle-busybox`` (``BUSYBOX_ALIAS``): a busybox-static rootfs whose
  ``/sbin/init`` is a quiet shell loop. It exits at once on SIGPWR (what ``incus stop``
  sends) or SIGTERM, so a stop takes no timeout. It touches ``/run/chronicle-booted``
  when ready. With the instance config ``environment.CHRONICLE_HTTP=1`` (or a file
  ``/etc/chronicle-http`` in the rootfs) init starts ``httpd -p 80 -h /www`` serving an
  ``index.html``; reach it with a proxy device ``listen=tcp:127.0.0.1:PORT``,
  ``connect=tcp:127.0.0.1:80``. Without it, start it yourself:
  ``exec httpd -p 80 -h /www`` (busybox applets are all on PATH).
- Alias ``chronicle-debian`` (``DEBIAN_ALIAS``, built by ``chronicle lab setup --debian``):
  a debootstrap minbase with systemd, udev, dbus and iproute2.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from chronicle.errors import LabError
from chronicle.lab.initramfs import INDEX_HTML

BUSYBOX_ALIAS = "chronicle-busybox"
DEBIAN_ALIAS = "chronicle-debian"
ALIASES = (BUSYBOX_ALIAS, DEBIAN_ALIAS)
# Debian guests of experiments/guests/ (lab.guestbuild.image_alias), ours to delete too
GUEST_PREFIX = "chronicle-guest-"

CONTAINER_INIT = r"""#!/bin/sh
# Chronicle container init: stay up quietly, stop at once when asked (see chronicle.lab.image).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
[ -e /proc/self ] || mount -t proc proc /proc
[ -e /sys/kernel ] || mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
ip link set lo up 2>/dev/null
trap 'exit 0' PWR TERM INT
if [ "$CHRONICLE_HTTP" = 1 ] || [ -e /etc/chronicle-http ]; then
    httpd -p 80 -h /www
fi
touch /run/chronicle-booted
# `wait` returns as soon as a trapped signal arrives; a foreground sleep would not.
while :; do
    sleep 3600 &
    wait $!
done
"""

_DIRS = ("bin", "dev", "etc", "proc", "root", "run", "sbin", "sys", "tmp", "usr",
         "usr/bin", "usr/sbin", "var", "www")


def metadata(description: str, os_name: str, release: str, created: int) -> bytes:
    import yaml  # loaded by the one command that builds an image, not by every CLI start

    return yaml.safe_dump({
        "architecture": "x86_64",
        "creation_date": created,
        "properties": {"description": description, "os": os_name, "release": release},
    }).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, *, mode: int = 0o644,
         kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    info.uid = info.gid = 0
    info.mtime = 0
    if data is None:
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def busybox_applets(busybox: Path) -> list[str]:
    """Install paths of every applet, e.g. ``bin/sh``, ``usr/bin/wget``."""
    run = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True)
    return sorted(line.strip().lstrip("/") for line in run.stdout.splitlines() if line.strip())


def build_busybox_image(busybox: Path, created: int | None = None) -> bytes:
    """The unified image tarball (``metadata.yaml`` + ``rootfs/``).

    Reproducible bytes for a given ``created`` (Incus rejects 0 as "missing").
    """
    created = int(time.time()) if created is None else created
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        _add(tar, "metadata.yaml", metadata("Chronicle busybox", "busybox", "static", created))
        _add(tar, "rootfs", kind=tarfile.DIRTYPE, mode=0o755)
        for d in _DIRS:
            _add(tar, f"rootfs/{d}", kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
        _add(tar, "rootfs/bin/busybox", busybox.read_bytes(), mode=0o755)
        for applet in busybox_applets(busybox):
            if applet in ("bin/busybox", "sbin/init"):
                continue
            depth = applet.count("/")
            _add(tar, f"rootfs/{applet}", kind=tarfile.SYMTYPE, mode=0o777,
                 link="../" * depth + "bin/busybox")
        _add(tar, "rootfs/sbin/init", CONTAINER_INIT.encode(), mode=0o755)
        _add(tar, "rootfs/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        _add(tar, "rootfs/etc/group", b"root:x:0:\n")
        _add(tar, "rootfs/etc/hostname", b"chronicle\n")
        _add(tar, "rootfs/www/index.html", INDEX_HTML)
    return out.getvalue()


def debootstrap_image(codename: str, mirror: str) -> bytes:
    """A Debian rootfs with systemd as an image tarball (slow: 1–3 minutes)."""
    with tempfile.TemporaryDirectory(prefix="chronicle-debian-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run = subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=systemd-sysv,udev,dbus,iproute2",
             codename, str(rootfs), mirror], capture_output=True, text=True)
        if run.returncode != 0:
            raise LabError(f"debootstrap failed: {run.stderr.strip()[-500:]}")
        (Path(tmp) / "metadata.yaml").write_bytes(
            metadata(f"Chronicle Debian {codename} (systemd)", "debian", codename,
                     int(time.time())))
        out = Path(tmp) / "image.tar.gz"
        subprocess.run(["tar", "-C", tmp, "--numeric-owner", "-czf", str(out),
                        "metadata.yaml", "rootfs"], check=True)
        return out.read_bytes()


def has_alias(client: Any, alias: str) -> bool:
    try:
        client.images.get_by_alias(alias)
    except Exception:  # pylxd's NotFound, or a transport error: either way not usable
        return False
    return True


def import_image(client: Any, tarball: bytes, alias: str) -> str:
    """Import ``tarball`` and point ``alias`` at it; returns the image fingerprint."""
    image = client.images.create(tarball, public=False, wait=True)
    if has_alias(client, alias):
        client.api.images.aliases[alias].delete()
    image.add_alias(alias, "Chronicle lab image")
    return image.fingerprint
