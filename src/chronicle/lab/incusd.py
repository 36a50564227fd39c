"""The Incus daemon on hosts without systemd: start, initialise, tear down.

Contract:

- The daemon runs detached in its own session; its PID is in ``PIDFILE``
  (``/run/chronicle-incusd.pid``), its log in ``LOGFILE``. Where systemd is PID 1 the
  packaged units start it instead (``systemctl start incus``).
- Storage pool ``chronicle`` (``POOL``): btrfs on an 8 GiB loop file. Profile ``default``
  has only a root disk on it (2 GiB); there is no managed network — reach a service in a
  container through a proxy device on 127.0.0.1.
- Instances whose name starts with ``chronicle-`` (``INSTANCE_PREFIX``) are ours:
  teardown deletes them; subjects must name theirs that way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from chronicle.errors import LabError
from chronicle.lab import host
from chronicle.lab.image import GUEST_PREFIX
from chronicle.lab.procgroup import alive

PIDFILE = Path("/run/chronicle-incusd.pid")
LOGFILE = Path("/var/log/incus/incusd.log")
POOL = "chronicle"
POOL_SIZE = "8GiB"
ROOT_SIZE = "2GiB"
INSTANCE_PREFIX = "chronicle-"
DAEMON_MOUNTS = (Path("/var/lib/incus/shmounts"), Path("/var/lib/incus/guestapi"))
ROOT_DEVICE = {"type": "disk", "path": "/", "pool": POOL, "size": ROOT_SIZE}


def incusd_pids() -> list[int]:
    """Every running incusd on the host, ours or not (from the process table)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if argv0.endswith(b"incusd") and alive(int(proc.name)):
            pids.append(int(proc.name))
    return sorted(pids)


def our_pid() -> int | None:
    """The PID in our pid file when that process is still an incusd."""
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid in incusd_pids() else None


def waitready(timeout: int = 60) -> None:
    incus = host.which("incus")
    if incus is None:
        raise LabError("the incus client is not installed: run `chronicle lab setup`")
    run = subprocess.run([str(incus), "admin", "waitready", f"--timeout={timeout}"],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise LabError(f"Incus did not become ready in {timeout} s: {run.stderr.strip()} "
                       f"(see {LOGFILE})")


def answering() -> bool:
    """True when the daemon answers on its socket right now."""
    if not host.incus_socket().exists():
        return False
    incus = host.which("incus")
    if incus is None:
        return False
    run = subprocess.run([str(incus), "admin", "waitready", "--timeout=2"],
                         capture_output=True, text=True)
    return run.returncode == 0


def start_daemon() -> str:
    """Start incusd unless it answers already; returns what was done."""
    if answering():
        return "already running"
    if host.systemd_is_init():
        subprocess.run(["systemctl", "start", "incus.socket", "incus.service"], check=True)
        waitready()
        return "started with systemctl"
    incusd = host.which("incusd")
    if incusd is None:
        raise LabError("incusd is not installed: run `chronicle lab setup`")
    LOGFILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOGFILE, "ab") as log:
        # A session of its own: the daemon must outlive this command and its terminal.
        proc = subprocess.Popen(
            [str(incusd), "--group", "root", "--logfile", str(LOGFILE)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            close_fds=True,
        )
    PIDFILE.write_text(f"{proc.pid}\n")
    waitready()
    return f"started (pid {proc.pid})"


def stop_daemon(timeout: float = 30) -> str:
    """Stop the incusd we started (by its PID); never touches one we did not start."""
    if host.systemd_is_init():
        subprocess.run(["systemctl", "stop", "incus.service", "incus.socket"], check=False)
        return "stopped with systemctl"
    pid = our_pid()
    if pid is None:
        PIDFILE.unlink(missing_ok=True)
        others = incusd_pids()
        return f"not ours to stop (incusd pids {others})" if others else "not running"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        os.kill(pid, signal.SIGKILL)
    PIDFILE.unlink(missing_ok=True)
    # incusd leaves its two small tmpfs mounts behind; the next start makes them again.
    for mount in DAEMON_MOUNTS:
        if _mounted(mount):
            subprocess.run(["umount", "-l", str(mount)], check=False)
    return f"stopped (pid {pid})"


def _mounted(path: Path, mounts: Path = Path("/proc/mounts")) -> bool:
    try:
        return any(line.split()[1] == str(path) for line in mounts.read_text().splitlines())
    except OSError:
        return False


def preseed(pool_exists: bool, profile_devices: dict[str, Any]) -> dict[str, Any] | None:
    """The preseed that brings the daemon to our layout, or None when it is there already."""
    doc: dict[str, Any] = {}
    if not pool_exists:
        doc["storage_pools"] = [{"name": POOL, "driver": "btrfs", "config": {"size": POOL_SIZE}}]
    if profile_devices.get("root") != ROOT_DEVICE:
        devices = {**profile_devices, "root": ROOT_DEVICE}
        doc["profiles"] = [{"name": "default", "devices": devices}]
    return doc or None


def initialise(client: Any) -> str:
    """Create the ``chronicle`` pool and the profile's root disk, if missing."""
    pool_exists = client.storage_pools.exists(POOL)
    profile = client.profiles.get("default")
    doc = preseed(pool_exists, dict(profile.devices))
    if doc is None:
        return "already initialised"
    import yaml  # loaded by `lab setup` only, not by every CLI start

    run = subprocess.run([str(host.which("incus")), "admin", "init", "--preseed"],
                         input=yaml.safe_dump(doc), capture_output=True, text=True)
    if run.returncode != 0:
        raise LabError(f"incus admin init --preseed failed: {run.stderr.strip()}")
    return "initialised: " + ", ".join(doc)


def pool_mounted(mounts: Path = Path("/proc/mounts")) -> bool:
    needle = f"/storage-pools/{POOL}"
    try:
        return any(needle in line.split()[1] for line in mounts.read_text().splitlines())
    except OSError:
        return False


def pool_file() -> Path:
    return host.INCUS_DIR / "disks" / f"{POOL}.img"


def remove_through_api(client: Any, aliases: tuple[str, ...],
                       prefix: str = GUEST_PREFIX) -> list[str]:
    """Delete our instances, images (``aliases``, and any alias starting with ``prefix``),
    the profile's root disk and the pool; what was done."""
    done = []
    for inst in client.instances.all():
        if not inst.name.startswith(INSTANCE_PREFIX):
            continue
        if inst.status != "Stopped":
            inst.stop(force=True, wait=True)
        inst.delete(wait=True)
        done.append(f"deleted instance {inst.name}")
    for image in client.images.all():
        names = {a["name"] for a in image.aliases}
        if names & set(aliases) or any(n.startswith(prefix) for n in names):
            image.delete(wait=True)
            done.append(f"deleted image {', '.join(sorted(names))}")
    profile = client.profiles.get("default")
    if profile.devices.get("root", {}).get("pool") == POOL:
        profile.devices = {k: v for k, v in profile.devices.items() if k != "root"}
        profile.save()
        done.append("removed the default profile's root disk")
    if client.storage_pools.exists(POOL):
        pool = client.storage_pools.get(POOL)
        users = [u for u in pool.used_by if "/profiles/" not in u]
        if users:
            raise LabError(f"storage pool {POOL} is still used by {users}; not deleting it")
        pool.delete()
        done.append(f"deleted storage pool {POOL}")
    return done
