"""``chronicle lab setup | teardown | doctor``: install, start and undo the lab's system parts.

``setup`` is idempotent: each step first looks, then acts only when something is
missing, so a second run changes nothing and takes seconds. Steps, in order: apt sources
(bookworm-backports on Debian 12, for Incus 6.0), packages, the Incus daemon, its pool
and profile, the busybox image (and with ``--debian`` a systemd one), the guest kernel
and initramfs in ``chronicle.paths.lab_dir()``.

``teardown`` removes what setup made in Incus, through the API first (instances named
``chronicle-*``, our images, the profile's root disk, the pool), then stops the daemon
we started and checks that no loop mount or incusd of ours is left. Packages stay.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from chronicle.errors import LabError
from chronicle.lab import guest, host, image, incusd
from chronicle.paths import lab_dir

SOURCES_D = Path("/etc/apt/sources.list.d")
BACKPORTS_FILE = SOURCES_D / "chronicle-backports.sources"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

BASE_PACKAGES = ("busybox-static", "xz-utils", "lz4")
# `chronicle lab guest build`: a Debian tree from the archive, an ext4 disk made from it;
# `root-format`: the same tree as an erofs image and as a cpio initramfs; the guest's VM
# image: a GPT disk (fdisk's sfdisk) with an EFI system partition (dosfstools, mtools)
# holding systemd-boot, as qcow2 (qemu-utils), booted by OVMF.
GUEST_PACKAGES = ("mmdebstrap", "e2fsprogs", "erofs-utils", "cpio", "fdisk", "dosfstools",
                  "mtools", "systemd-boot-efi", "qemu-utils", "ovmf")
QEMU_PACKAGES = ("qemu-system-x86",)
INCUS_PACKAGES = ("incus-base", "incus-client", "btrfs-progs")
DEBIAN_IMAGE_PACKAGES = ("debootstrap",)
# Releases whose main archive lacks Incus 6 but whose backports have it.
NEEDS_BACKPORTS = {"bookworm"}

APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
APT_OPTS = ["-q", "-y", "-o", "DPkg::Lock::Timeout=300", "--no-install-recommends"]


# --- pure decisions (tested without touching the host) ---------------------------------


def _stanzas(text: str) -> list[dict[str, str]]:
    stanzas, current, key = [], {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
        elif line[0] in " \t" and key:
            current[key] += "\n" + line
        elif ":" in line:
            key, value = line.split(":", 1)
            current[key.strip()] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def mentions_suite(texts: Iterable[str], suite: str) -> bool:
    """True when any apt source (one-line or deb822, not commented out) lists ``suite``."""
    for text in texts:
        for line in text.splitlines():
            line = line.split("#", 1)[0]
            if re.search(rf"(^|\s){re.escape(suite)}(\s|$)", line):
                return True
    return False


def backports_source(codename: str, deb822: str | None, one_line: str | None) -> str:
    """A deb822 stanza for ``<codename>-backports`` copying the main archive's URI and key."""
    uri, signed_by = None, None
    for stanza in _stanzas(deb822 or ""):
        if codename in stanza.get("Suites", "").split():
            uri = stanza.get("URIs", "").split()[0]
            signed_by = stanza.get("Signed-By")
            break
    if uri is None:
        pattern = rf"^\s*deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+{re.escape(codename)}\s"
        for found in re.finditer(pattern, one_line or "", re.MULTILINE):
            uri = found.group(2)
            opts = dict(o.split("=", 1) for o in (found.group(1) or "").split() if "=" in o)
            signed_by = opts.get("signed-by")
            break
    if uri is None:
        raise LabError(f"no apt source for {codename} to copy the backports mirror from")
    if signed_by is None and Path(DEFAULT_KEYRING).exists():
        signed_by = DEFAULT_KEYRING
    lines = ["Types: deb", f"URIs: {uri}", f"Suites: {codename}-backports", "Components: main"]
    if signed_by:
        lines.append(f"Signed-By: {signed_by}")
    return "\n".join(lines) + "\n"


def wanted_packages(*, incus: bool, qemu: bool, debian: bool) -> list[str]:
    wanted = list(BASE_PACKAGES)
    if incus:
        wanted += INCUS_PACKAGES
    if qemu:
        wanted += QEMU_PACKAGES
    if incus or qemu:
        wanted += GUEST_PACKAGES
    if debian:
        wanted += DEBIAN_IMAGE_PACKAGES
    return wanted


def missing_packages(wanted: Iterable[str], installed: set[str]) -> list[str]:
    return [p for p in wanted if p not in installed]


# --- host actions ----------------------------------------------------------------------


def installed_packages(names: Iterable[str]) -> set[str]:
    run = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n", *names],
                         capture_output=True, text=True)
    return {line.split()[0] for line in run.stdout.splitlines()
            if len(line.split()) > 1 and line.split()[1].startswith("ii")}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def ensure_backports(codename: str) -> str:
    if codename not in NEEDS_BACKPORTS:
        return f"not needed on {codename}"
    suite = f"{codename}-backports"
    sources = [Path("/etc/apt/sources.list"), *sorted(SOURCES_D.glob("*.list")),
               *sorted(SOURCES_D.glob("*.sources"))]
    if mentions_suite(filter(None, map(_read, sources)), suite):
        return f"{suite} already configured"
    text = backports_source(codename, _read(SOURCES_D / "debian.sources"),
                            _read(Path("/etc/apt/sources.list")))
    BACKPORTS_FILE.write_text(text)
    return f"added {BACKPORTS_FILE}"


def apt(*args: str) -> None:
    run = subprocess.run(["apt-get", *args], env=APT_ENV, capture_output=True, text=True)
    if run.returncode != 0:
        raise LabError(f"apt-get {' '.join(args)} failed: {run.stderr.strip()[-800:]}")


def ensure_packages(wanted: list[str]) -> str:
    missing = missing_packages(wanted, installed_packages(wanted))
    if not missing:
        return "all installed"
    apt("-q", "-o", "DPkg::Lock::Timeout=300", "update")
    apt("install", *APT_OPTS, *missing)
    return "installed " + " ".join(missing)


def ensure_images(debian: bool, codename: str) -> str:
    client = host.incus_client()
    done = []
    if image.has_alias(client, image.BUSYBOX_ALIAS):
        done.append(f"{image.BUSYBOX_ALIAS} present")
    else:
        tarball = image.build_busybox_image(guest.busybox_static())
        image.import_image(client, tarball, image.BUSYBOX_ALIAS)
        done.append(f"imported {image.BUSYBOX_ALIAS} ({len(tarball) // 1024} KiB)")
    if debian:
        if image.has_alias(client, image.DEBIAN_ALIAS):
            done.append(f"{image.DEBIAN_ALIAS} present")
        else:
            tarball = image.debootstrap_image(codename, mirror_for(codename))
            image.import_image(client, tarball, image.DEBIAN_ALIAS)
            done.append(f"imported {image.DEBIAN_ALIAS} ({len(tarball) // 2**20} MiB)")
    return "; ".join(done)


def mirror_for(codename: str) -> str:
    """The archive this host's apt sources name for ``codename`` (Debian's own else)."""
    for stanza in _stanzas(_read(SOURCES_D / "debian.sources") or ""):
        if codename in stanza.get("Suites", "").split():
            return stanza["URIs"].split()[0]
    found = re.search(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+" + codename,
                      _read(Path("/etc/apt/sources.list")) or "", re.MULTILINE)
    return found.group(1) if found else "http://deb.debian.org/debian"


def step(name: str, action: Callable[[], str]) -> str:
    """Run one step, printing its outcome and duration."""
    start = time.monotonic()
    print(f"• {name} …", end="", flush=True)
    outcome = action()
    print(f" {outcome} ({time.monotonic() - start:.2f} s)", flush=True)
    return outcome


def _require_root_debian() -> str:
    if os.geteuid() != 0:
        raise LabError("`chronicle lab setup` installs packages and starts daemons: run it as root")
    release = host.os_release()
    family = {release.get("ID", ""), *release.get("ID_LIKE", "").split()}
    if not family & {"debian", "ubuntu"}:
        raise LabError(f"lab setup supports Debian and Ubuntu, not {release.get('ID', '?')}")
    codename = release.get("VERSION_CODENAME", "")
    if not codename:
        raise LabError("cannot tell the release codename from /etc/os-release")
    return codename


def setup(*, debian: bool = False, incus: bool = True, qemu: bool = True,
          lab: Path | None = None) -> None:
    codename = _require_root_debian()
    lab = lab or lab_dir()
    total = time.monotonic()
    if incus and host.os_release().get("ID") == "debian":
        step("apt sources", lambda: ensure_backports(codename))
    step("packages", lambda: ensure_packages(wanted_packages(incus=incus, qemu=qemu,
                                                                 debian=debian)))
    if incus:
        step("incus daemon", incusd.start_daemon)
        step("incus storage and profile", lambda: incusd.initialise(host.incus_client()))
        step("incus images", lambda: ensure_images(debian, codename))
    step("guest kernel and initramfs", lambda: _guest_summary(lab))
    print(f"lab ready in {time.monotonic() - total:.1f} s")


def _guest_summary(lab: Path) -> str:
    manifest = guest.guest_dir(lab) / guest.MANIFEST
    before = manifest.stat().st_mtime_ns if manifest.exists() else None
    assets = guest.ensure_guest_assets(lab)
    changed = before != manifest.stat().st_mtime_ns
    return f"{'built' if changed else 'present'}: {assets.kernel_version}, {assets.initrd.name}"


def teardown() -> None:
    if os.geteuid() != 0:
        raise LabError("`chronicle lab teardown` stops daemons: run it as root")
    started_for_teardown = False
    if not incusd.answering() and (incusd.pool_mounted() or incusd.pool_file().exists()):
        # Our pool is still there: the daemon must be up to remove it cleanly.
        step("incus daemon (to clean up)", incusd.start_daemon)
        started_for_teardown = True
    if incusd.answering():
        step("remove through the API", lambda: "; ".join(
            incusd.remove_through_api(host.incus_client(), image.ALIASES)) or "nothing of ours")
    step("stop the daemon", incusd.stop_daemon)
    left = leftovers()
    if left:
        raise LabError("teardown left behind: " + "; ".join(left))
    print("teardown complete" + (" (daemon was started to clean up)" if started_for_teardown
                                 else ""))


def leftovers() -> list[str]:
    """What of ours survives: the pool's mount, its loop file, our daemon."""
    left = []
    if incusd.pool_mounted():
        left.append(f"storage pool {incusd.POOL} still mounted")
    if incusd.pool_file().exists():
        left.append(f"loop file {incusd.pool_file()} still present")
    if incusd.our_pid() is not None:
        left.append(f"incusd pid {incusd.our_pid()} still running")
    return left


def register(lab_sub: argparse._SubParsersAction) -> None:
    """Add ``setup``, ``teardown`` and ``doctor`` to the ``chronicle lab`` group."""
    from chronicle.lab import doctor

    p = lab_sub.add_parser("setup", help="install and start what experiments need (root)")
    p.add_argument("--debian", action="store_true",
                   help="also build the Debian+systemd image (1-3 minutes)")
    p.add_argument("--skip-incus", action="store_true", help="no Incus daemon or images")
    p.add_argument("--skip-qemu", action="store_true", help="no qemu package")
    p.set_defaults(func=lambda a: setup(debian=a.debian, incus=not a.skip_incus,
                                        qemu=not a.skip_qemu))
    t = lab_sub.add_parser("teardown", help="remove the lab's Incus state and stop the daemon")
    t.set_defaults(func=lambda a: teardown())
    doctor.register(lab_sub)
