"""The lab on other machines, over the system ``ssh``: doctor, setup and run there.

One connection per host: a master opened once (``ControlMaster``, its socket in a
private folder of ours, ``ControlPersist`` short so a killed Chronicle leaves nothing
for long), every later command multiplexed over it. ``BatchMode`` so a missing key
fails at once instead of asking for a password nobody is there to type.

On the host, Chronicle keeps one working folder (``workdir`` in ``lab.toml``) with two
parts, both replaced on every visit so the host runs exactly what this checkout holds:
``chronicle/`` — the running Chronicle's own package, so the same version and commit —
and ``site/`` — ``site/site.toml``, ``experiments/`` and the declared inputs of the
experiments asked for, plus this host's last good result of each (so the host judges
freshness against its own runs, and dates new ids after them). ``site/experiments/results``
is kept across visits (a run whose connection dropped stays there and is fetched on
the next visit), and so are ``site/.lab`` (guest kernels, built by ``lab setup --on``)
and ``site/.chronicle`` (the records ``lab run`` keeps to end a run left behind).
Nothing else of ours goes there: no key, no token.

Result files come back whole, byte for byte, and each passes the one validation
(:mod:`chronicle.lab.validation`) before it is written, atomically, beside the local
results; a file whose name is taken by different bytes is refused, never overwritten.
"""

from __future__ import annotations

import hashlib
import io
import json
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import chronicle
from chronicle.errors import LabError
from chronicle.lab import experiment as exp
from chronicle.lab import provenance
from chronicle.lab.hosts import LabHost
from chronicle.lab.procgroup import RunInterrupted, SignalLatch, trap_signals
from chronicle.lab.results import ResultStore
from chronicle.lab.validation import file_problems
from chronicle.paths import CONFIG, SitePaths
from chronicle.swap import atomic_write

CONNECT_TIMEOUT = 10
PERSIST = 30  # seconds the master outlives its last use (and a killed Chronicle)
PID_LINE = "chronicle-remote-pid "
HELD_LINE = "chronicle-visit-held"
BUSY = 75  # flock's exit status when another visit holds the working folder
UNREACHABLE = 255  # ssh's own exit status for "could not connect / connection lost"


class HostBusy(LabError):
    """Another visit (a `lab run --on` from some checkout) holds the host's working folder."""


def default_workdir(root: Path) -> str:
    """Relative to the host's home; the checkout's path in the name, so two checkouts of
    one name never share a folder (nor each other's results)."""
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    return f".cache/chronicle-lab/{root.name or 'site'}-{tag}"


class Connection:
    """``ssh`` to one host, multiplexed over one master connection."""

    def __init__(self, host: LabHost, control: Path):
        self.host = host
        self.control = control
        self.socket = control / host.name
        self.workdir = host.workdir
        self.visit: subprocess.Popen | None = None

    def options(self) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}",
                "-o", f"ControlPath={self.socket}", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3"]
        if self.host.ssh_config:
            opts = ["-F", str(self.host.ssh_config), *opts]
        if self.host.port:
            opts += ["-p", str(self.host.port)]
        if self.host.identity:
            opts += ["-i", str(self.host.identity), "-o", "IdentitiesOnly=yes"]
        return opts

    def open(self) -> None:
        """Open the master; LabError with ssh's own reason when the host is unreachable."""
        if self.socket.exists():
            return
        log = self.control / f"{self.host.name}.log"
        with open(log, "wb") as err:
            # -f: ssh backgrounds itself once authenticated; its stderr goes to a file
            # because the backgrounded master keeps it open (a pipe would never close).
            done = subprocess.run(
                ["ssh", *self.options(), "-o", "ControlMaster=yes",
                 "-o", f"ControlPersist={PERSIST}", "-N", "-f", "--", self.host.ssh],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                timeout=CONNECT_TIMEOUT * 3, start_new_session=True)
        if done.returncode != 0:
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            raise LabError(f"host {self.host.name!r} ({self.host.ssh}) unreachable: "
                           f"{lines[-1] if lines else f'ssh exit status {done.returncode}'}")
        self._hold_workdir()

    def _hold_workdir(self) -> None:
        """Take the working folder for this visit: a second visit would replace the copy
        of Chronicle a running experiment is still starting programs from.

        The lock is an ``flock`` held by a session that lasts until we close its input —
        or until the connection is gone, so a killed Chronicle never leaves it held.
        """
        self.visit = subprocess.Popen(
            self.argv(_in_workdir(self, f"exec flock -n -E {BUSY} .visit.lock sh -c "
                                        f"'echo {HELD_LINE}; exec cat >/dev/null'")),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        assert self.visit.stdout is not None
        if self.visit.stdout.readline().decode().strip() == HELD_LINE:
            return
        code, err = self.visit.wait(), self.visit.stderr.read().decode(errors="replace")
        self.visit = None
        if code == BUSY:
            raise HostBusy(f"host {self.host.name!r}: busy, another `lab run --on` is using "
                           f"{self.workdir}")
        raise LabError(f"host {self.host.name!r}: cannot take {self.workdir}: "
                       f"{err.strip() or f'exit status {code}'}")

    def argv(self, script: str) -> list[str]:
        return ["ssh", *self.options(), "-o", "ControlMaster=no", "--", self.host.ssh, script]

    def run(self, script: str, data: bytes | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(script), input=data, capture_output=True,
                              timeout=timeout, start_new_session=True,
                              stdin=None if data is not None else subprocess.DEVNULL)

    def check(self, script: str, what: str, data: bytes | None = None,
              timeout: float = 300) -> bytes:
        done = self.run(script, data, timeout)
        if done.returncode != 0:
            reason = done.stderr.decode(errors="replace").strip().splitlines()
            lost = " (connection lost)" if done.returncode == UNREACHABLE else ""
            raise LabError(f"host {self.host.name!r}: {what} failed{lost}: "
                           f"{reason[-1] if reason else f'exit status {done.returncode}'}")
        return done.stdout

    def close(self) -> None:
        if self.visit is not None:
            self.visit.stdin.close()  # its `cat` ends, and flock lets go
            try:
                self.visit.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.visit.kill()
                self.visit.wait()
            self.visit = None
        if self.socket.exists():
            subprocess.run(["ssh", *self.options(), "-O", "exit", "--", self.host.ssh],
                           capture_output=True, timeout=10, stdin=subprocess.DEVNULL)


class Hosts:
    """Connections to several hosts, their sockets in one private folder, all closed after."""

    def __init__(self, hosts: list[LabHost], root: Path):
        self.control = Path(tempfile.mkdtemp(prefix="chronicle-ssh-"))
        self.root = root
        self.connections = {}
        for host in hosts:
            conn = Connection(host, self.control)
            # ssh starts in the home folder: "~/x" is "x" (a quoted "~" would not expand)
            conn.workdir = (host.workdir or default_workdir(root)).removeprefix("~/")
            self.connections[host.name] = conn

    def __enter__(self) -> Hosts:
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self.connections.values():
            try:
                conn.close()
            except (OSError, subprocess.SubprocessError):
                pass  # ControlPersist ends the master soon anyway
        shutil.rmtree(self.control, ignore_errors=True)


# -- what goes to the host --------------------------------------------------------------------


def _add_tree(tar: tarfile.TarFile, folder: Path, prefix: str, skip: set[str]) -> None:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if set(rel.parts) & skip or any(p.startswith(".") for p in rel.parts):
            continue
        if path.is_file() and path.suffix != ".pyc":
            tar.add(path, f"{prefix}/{rel.as_posix()}", recursive=False)


def bundle(root: Path, experiments: list[exp.Experiment], label: str) -> bytes:
    """A tar of the pinned Chronicle and the site part the experiments need."""
    paths = SitePaths(root)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        package = Path(chronicle.__file__).resolve().parent
        _add_tree(tar, package, "chronicle/chronicle", {"__pycache__"})
        tar.add(paths.config, f"site/{CONFIG.as_posix()}")
        _add_tree(tar, paths.experiments, "site/experiments", {"__pycache__", "results"})
        store = ResultStore(paths.results)
        for experiment in experiments:
            for rel in exp.input_hashes(experiment):  # again if under experiments/: harmless
                tar.add(root / rel, f"site/{rel}", recursive=False)
            shown = store.shown(experiment.name, host=label)
            if shown is not None and shown.path is not None:
                tar.add(shown.path, f"site/{shown.path.relative_to(root).as_posix()}")
    return out.getvalue()


def _in_workdir(conn: Connection, script: str) -> str:
    return f"mkdir -p {shlex.quote(conn.workdir)} && cd {shlex.quote(conn.workdir)} && {script}"


def ship(conn: Connection, data: bytes) -> None:
    """Replace the host's copy of Chronicle and the site, keeping its stored results."""
    script = _in_workdir(conn, (
        "rm -rf chronicle && mkdir -p site/experiments/results && "
        "find site -mindepth 1 -maxdepth 1 ! -name experiments ! -name .lab "
        "! -name .chronicle -exec rm -rf {} + && "
        "find site/experiments -mindepth 1 -maxdepth 1 ! -name results -exec rm -rf {} + && "
        "tar -x -f -"))
    conn.check(script, "copying Chronicle and the experiments", data)


def chronicle_command(conn: Connection, args: list[str]) -> str:
    """The shell command that runs ``chronicle ARGS`` in the host's copy of the site."""
    python = shlex.quote(conn.host.python) if conn.host.python else \
        '"$(if [ -x ../venv/bin/python ]; then echo ../venv/bin/python; else echo python3; fi)"'
    return _in_workdir(conn, (
        f"cd site && PYTHONPATH=\"$(cd .. && pwd)/chronicle\" && export PYTHONPATH && "
        f"exec {python} -m chronicle {shlex.join(args)}"))


# -- doctor -----------------------------------------------------------------------------------


def doctor_report(conn: Connection) -> dict:
    """The host's ``lab doctor --json``, as a dict."""
    out = conn.check(chronicle_command(conn, ["lab", "doctor", "--json", "--root", "."]),
                     "lab doctor", timeout=120)
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        raise LabError(f"host {conn.host.name!r}: lab doctor printed no JSON") from None


def summary(report: dict) -> str:
    """One line: KVM kind, Incus, the VMMs found."""
    checks = {c["name"]: c for c in report.get("checks", [])}

    def detail(name: str) -> str:
        return checks.get(name, {}).get("detail", "?")

    kvm = detail("kvm").split(";")[0].removeprefix("kind ")
    incus = detail("incus").split(",")[0].removeprefix("version ") \
        if checks.get("incus", {}).get("ok") else "no"
    vmms = [f"{name} {detail(name).split(',')[0].removeprefix('version ')}"
            for name in ("qemu", "firecracker", "cloud-hypervisor")
            if checks.get(name, {}).get("ok")]
    return f"KVM {kvm}; Incus {incus}; VMMs: {', '.join(vmms) or 'none'}"


# -- fetching results -------------------------------------------------------------------------


def fetch_results(conn: Connection, root: Path, names: list[str]) -> list[Path]:
    """Copy the host's result files of ``names`` that this checkout lacks; the new paths.

    Each file is validated before it is stored; one that fails, or whose name is taken
    here by different bytes, is left on the host and named in the error raised after
    every good file is stored.
    """
    results = SitePaths(root).results
    quoted = " ".join(shlex.quote(n) for n in names)
    listing = conn.check(_in_workdir(conn, (
        f"cd site/experiments/results 2>/dev/null || exit 0; for d in {quoted}; do "
        "for f in \"$d\"/*.json; do [ -f \"$f\" ] && sha256sum -- \"$f\"; done; done; true")),
        "listing results").decode().splitlines()
    there = dict(reversed(line.split(None, 1)) for line in listing if line.strip())
    # Only <experiment>/<file>.json of the experiments asked for, whatever the host says.
    there = {rel: digest for rel, digest in there.items()
             if rel.count("/") == 1 and rel.split("/")[0] in names and rel.endswith(".json")
             and ".." not in rel}
    wanted = [rel for rel, digest in there.items() if not (results / rel).exists()
              or hashlib.sha256((results / rel).read_bytes()).hexdigest() != digest]
    if not wanted:
        return []
    data = conn.check(_in_workdir(conn, "cd site/experiments/results && tar -c -f - -- "
                                  + " ".join(shlex.quote(w) for w in wanted)),
                      "fetching results", timeout=600)
    stored, refused = [], []
    with tempfile.TemporaryDirectory(prefix="chronicle-fetch-") as scratch, \
            tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar.getmembers():
            if not member.isfile() or member.name not in wanted:
                continue
            body = tar.extractfile(member).read()
            check = Path(scratch) / member.name
            check.parent.mkdir(parents=True, exist_ok=True)
            check.write_bytes(body)
            problems = file_problems(check)[1]
            target = results / member.name
            if problems:
                refused.append(f"{member.name}: not a valid result: {problems[0]}")
            elif target.exists() and target.read_bytes() != body:
                refused.append(f"{member.name}: a different file of that name is stored here")
            elif not target.exists():
                atomic_write(target, body)
                stored.append(target)
    if refused:
        raise LabError(f"host {conn.host.name!r}: kept on the host, not fetched: "
                       + "; ".join(refused))
    return stored


# -- runs on several hosts --------------------------------------------------------------------


@dataclass
class HostRun:
    """One host's share of ``lab run --on``: its experiments, one at a time."""

    conn: Connection
    root: Path
    experiments: list[exp.Experiment]
    run_args: list[str]
    say: Callable[[str, str], None]
    status: str = "pending"
    fetched: list[Path] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    _pid: int | None = None

    @property
    def name(self) -> str:
        return self.conn.host.name

    def __call__(self) -> None:
        try:
            self._run()
        except (LabError, OSError, subprocess.SubprocessError) as exc:
            self.say(self.name, f"error: {exc}")
            if self.status in ("pending", "running"):
                self.status = "failed"
        finally:
            self.finished.set()

    def _run(self) -> None:
        self.conn.open()
        ship(self.conn, bundle(self.root, self.experiments, self.name))
        names = [e.name for e in self.experiments]
        self._fetch(names, "left by an earlier visit")
        self.status = "running"
        for experiment in self.experiments:
            if self.cancelled.is_set():
                self.status = "cancelled"
                return
            code = self._run_one(experiment)
            if code != UNREACHABLE:
                self._fetch([experiment.name], "")
            if code == UNREACHABLE:
                self.status = "dropped"
                self.say(self.name, "connection lost: results stored so far are kept; what "
                                    "the host finishes is fetched on the next visit")
                return
            if code == 130 or self.cancelled.is_set():
                self.status = "cancelled"
                return
            if code != 0:
                self.status = "failed"
        if self.status == "running":
            self.status = "ok"

    def _fetch(self, names: list[str], why: str) -> None:
        try:
            found = fetch_results(self.conn, self.root, names)
        except LabError as exc:
            self.say(self.name, f"error: {exc}")
            self.status = "failed"
            return
        self.fetched += found
        for path in found:
            self.say(self.name, f"fetched {path.relative_to(self.root)}"
                     + (f" ({why})" if why else ""))

    def _run_one(self, experiment: exp.Experiment) -> int:
        git = provenance.git_state(self.root, [experiment.relpath,
                                               *exp.input_hashes(experiment)])
        args = ["lab", "run", "--no-progress", "--as-host", self.name,
                "--git-state", json.dumps(git, sort_keys=True), *self.run_args, experiment.name]
        script = "exec 2>&1; echo " + PID_LINE + "$$; " + chronicle_command(self.conn, args)
        # Its own session: a Ctrl-C here must not cut the connection before `cancel` has
        # asked the host's run to stop and clean up.
        proc = subprocess.Popen(self.conn.argv(script), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        assert proc.stdout is not None
        self._stream(proc.stdout)
        code = proc.wait()
        self._pid = None
        return code

    def _stream(self, out: IO[bytes]) -> None:
        for raw in out:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            if line.startswith(PID_LINE) and self._pid is None:
                self._pid = int(line.removeprefix(PID_LINE))
                if self.cancelled.is_set():
                    self.cancel()
                continue
            self.say(self.name, line)

    def cancel(self) -> None:
        """Ask the host's ``lab run`` to stop (it ends its script and guests, and stores
        the run as cancelled); through the same master connection."""
        self.cancelled.set()
        pid = self._pid
        if pid is not None:
            try:
                self.conn.run(f"kill -TERM {pid}", timeout=20)
            except (OSError, subprocess.SubprocessError):
                pass  # the connection is gone: the host's run ends when its ssh session does


def run_on_hosts(root: Path, hosts: Hosts, experiments: list[exp.Experiment],
                 run_args: list[str]) -> int:
    """Each host in its own thread, experiments in order; 130 after Ctrl-C."""
    lock = threading.Lock()

    def say(host: str, line: str) -> None:
        with lock:
            print(f"[{host}] {line}", file=sys.stderr, flush=True)

    runs = [HostRun(conn, root, experiments, run_args, say)
            for conn in hosts.connections.values()]
    for run in runs:
        threading.Thread(target=run, name=run.name, daemon=True).start()
    # Ctrl-C, or SIGTERM (a CI job cancelled, a service stopped), stops the hosts' runs:
    # noted by the latch and acted on here, never raised from wherever the main thread is.
    latch = SignalLatch()
    restore = trap_signals(latch)

    def wait(until: float, interruptible: bool) -> None:
        # Polls the runs' flags, so that the latch is looked at in between.
        while not all(r.finished.is_set() for r in runs) and time.monotonic() < until:
            if interruptible:
                latch.check()
            time.sleep(0.05)

    interrupted = False
    try:
        wait(float("inf"), interruptible=True)
    except RunInterrupted:
        interrupted = True
        print("interrupted: stopping the runs on every host …", file=sys.stderr, flush=True)
        for run in runs:
            run.cancel()
        wait(time.monotonic() + 60, interruptible=False)
    finally:
        restore()
    for run in runs:
        say(run.name, f"{run.status}, {len(run.fetched)} result file(s) fetched")
    if interrupted or any(r.status == "cancelled" for r in runs):
        return 130
    return 0 if all(r.status == "ok" for r in runs) else 1


def _stream_command(conn: Connection, args: list[str], prelude: str = "") -> int:
    """Run ``chronicle ARGS`` on the host, its output passed through as it comes."""
    done = subprocess.run(conn.argv(prelude + chronicle_command(conn, args)),
                          stdin=subprocess.DEVNULL, start_new_session=True)
    return done.returncode


def doctor_on(root: Path, hosts: Hosts, args: list[str]) -> int:
    """``lab doctor`` on one host: its whole report, its exit status."""
    (conn,) = hosts.connections.values()
    conn.open()
    ship(conn, bundle(root, [], conn.host.name))
    return _stream_command(conn, ["lab", "doctor", "--root", ".", *args])


def setup_on(root: Path, hosts: Hosts, args: list[str]) -> int:
    """``lab setup`` on one host, with Chronicle's dependencies in ``WORKDIR/venv`` first
    unless ``lab.toml`` names the interpreter to use."""
    (conn,) = hosts.connections.values()
    conn.open()
    ship(conn, bundle(root, [], conn.host.name))
    prelude = ""
    if not conn.host.python:
        wanted = " ".join(shlex.quote(r) for r in _dependencies())
        prelude = "( " + _in_workdir(conn, (
            "{ [ -x venv/bin/python ] || python3 -m venv venv; } && "
            f"venv/bin/python -m pip install -q {wanted}")) + " ) && "
    return _stream_command(conn, ["lab", "setup", *args], prelude)


def _dependencies() -> list[str]:
    """Chronicle's own requirements (no extras), as its installed metadata states them."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        found = requires("chronicle") or []
    except PackageNotFoundError:
        raise LabError("Chronicle is not installed as a package here: its dependencies "
                       "for the host are unknown (set `python` for the host in lab.toml)"
                       ) from None
    return [r for r in found if "extra ==" not in r]
