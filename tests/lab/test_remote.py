"""``lab hosts`` and ``lab run --on`` through a real OpenSSH server on 127.0.0.1.

Each "remote" host is this machine seen through its own sshd, with its own working
folder: what crosses is exactly what would cross to another machine.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from chronicle.lab.validation import validate_store
from tests.support import LoopbackSSH, kill_all, left_running, tree

from .conftest import cli_env

# Prints one sample every STEP seconds: long enough to be cut mid-run.
SLOW = """\
i=1
while [ $i -le {count} ]; do
  printf '{{"subject": "sh", "metric": "t_ms", "value": %d, "unit": "ms", "run": %d}}\\n' $i $i
  echo "sample $i" >&2
  sleep {step}
  i=$((i+1))
done
"""


@pytest.fixture
def servers(tmp_path):
    started = []

    def start(name: str) -> LoopbackSSH:
        folder = tmp_path / f"sshd-{name}"
        folder.mkdir()
        started.append(LoopbackSSH(folder).start())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def committed(root) -> str:
    """``root`` as a git checkout with everything committed; its commit."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c",
                               "user.email=t@example.invalid", *args], check=True,
                              capture_output=True, text=True).stdout.strip()
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "site")
    return git("rev-parse", "HEAD")


def hosts_file(site, tables: str) -> None:
    (site.root / "site" / "lab.toml").write_text(tables)


def lab(site, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "chronicle", "lab", *args,
                             "--root", str(site.root)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env())


def test_hosts_reports_the_loopback_host_and_why_others_are_unreachable(site, servers,
                                                                       tmp_path):
    server = servers("a")
    stranger = tmp_path / "stranger_ed25519"  # a key the server does not know
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)
    wrong_key = server.host_table("wrongkey", tmp_path / "work2").replace(
        str(server.key), str(stranger))
    hosts_file(site, server.host_table("loop", tmp_path / "work") + wrong_key +
               '[hosts.gone]\nssh = "root@127.0.0.1"\nport = 1\n')
    done = site.chronicle("lab", "hosts")
    assert done.returncode == 1, done.stderr  # declared hosts cannot be reached
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines()
            if line.count("│") > 3}
    assert "yes" in rows["loop"] and "KVM " in rows["loop"] and "VMMs:" in rows["loop"]
    assert "yes" in rows["local"]
    assert "no" in rows["gone"] and "no" in rows["wrongkey"]
    assert "host 'gone' (root@127.0.0.1) unreachable: ssh: connect to host 127.0.0.1 port 1: " \
           "Connection refused" in done.stdout
    assert "host 'wrongkey' (root@127.0.0.1) unreachable: root@127.0.0.1: Permission " \
           "denied (publickey)" in done.stdout


def test_doctor_on_a_host_prints_that_host_s_report(site, servers, tmp_path):
    server = servers("a")
    hosts_file(site, server.host_table("loop", tmp_path / "work"))
    done = site.chronicle("lab", "doctor", "--on", "loop", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"kvm", "qemu", "incus"} <= {check["name"] for check in report["checks"]}
    refused = site.chronicle("lab", "doctor", "--on", "loop", "--require", "no-such-part")
    assert refused.returncode == 1 and "missing required: no-such-part" in refused.stdout
    unknown = site.chronicle("lab", "doctor", "--on", "kvmbox")
    assert unknown.returncode == 1
    assert "unknown lab host 'kvmbox' (known: local, loop)" in unknown.stderr


def test_run_on_a_host_brings_its_result_back_byte_for_byte(site, servers, tmp_path):
    server = servers("a")
    work = tmp_path / "work"
    hosts_file(site, server.host_table("loop", work))
    site.script("tiny", SLOW.format(count=3, step=0), block="repeat = 3", suffix=".sh")
    commit = committed(site.root)
    done = site.chronicle("lab", "run", "--on", "loop", "tiny")
    assert done.returncode == 0, done.stderr
    assert "[loop] tiny: ok, 3 samples" in done.stderr  # the host's own progress, relayed
    (fetched,) = site.store().runs("tiny")
    there = work / "site" / "experiments" / "results" / "tiny" / fetched.path.name
    assert fetched.path.read_bytes() == there.read_bytes()
    assert validate_store(site.results) == {}
    assert fetched.lab_host == "loop" and fetched.status == "ok"
    # The host's copy is no checkout: the commit is this checkout's.
    assert fetched.provenance["git"] == {"commit": commit, "dirty": False,
                                         "sources_dirty": False}
    kept = work / "site" / ".lab" / "guest-kernel"  # what `lab setup --on` builds there
    kept.parent.mkdir()
    kept.write_text("big")
    shown = site.chronicle("lab", "show", "tiny")
    assert shown.returncode == 0 and "lab host  loop" in shown.stdout
    again = site.chronicle("lab", "run", "--on", "loop", "tiny")
    assert again.returncode == 0 and "[loop] tiny: fresh" in again.stderr
    assert kept.read_text() == "big"


def test_a_host_dropping_mid_run_loses_nothing_and_stops_no_other(site, servers, tmp_path):
    steady, dropping = servers("steady"), servers("dropping")
    hosts_file(site, steady.host_table("steady", tmp_path / "work-steady") +
               dropping.host_table("dropping", tmp_path / "work-dropping"))
    site.script("slow", SLOW.format(count=8, step=0.4), block="repeat = 8", suffix=".sh")
    site.script("quick", SLOW.format(count=2, step=0), block="repeat = 2", suffix=".sh")
    first = site.chronicle("lab", "run", "--on", "steady,dropping", "quick")
    assert first.returncode == 0, first.stderr
    before = tree(site.results)
    assert len(before) == 2  # one result of `quick` from each host

    run = lab(site, "run", "--on", "steady,dropping", "slow")
    time.sleep(1.5)
    dropping.stop()
    try:
        out, err = run.communicate(timeout=60)
    finally:
        kill_all(left_running(str(tmp_path / "work-dropping"), within=10))
    assert run.returncode == 1, err
    assert "[dropping] connection lost" in err and "[steady] slow: ok, 8 samples" in err
    after = tree(site.results)
    assert {name: after[name] for name in before} == before
    assert [r.lab_host for r in site.store().runs("slow")] == ["steady"]
    assert validate_store(site.results) == {}


def test_ctrl_c_stops_the_remote_run_and_keeps_what_it_measured(site, servers, tmp_path):
    """…and while it runs, a second visit to the same host is refused."""
    server = servers("a")
    work = tmp_path / "work"
    hosts_file(site, server.host_table("loop", work))
    # long enough that the second visit below, an ssh session of its own that a loaded
    # machine can take seconds to open, ends well before the run would
    site.script("slow", SLOW.format(count=400, step=0.25), block="repeat = 400", suffix=".sh")
    run = lab(site, "run", "--on", "loop", "slow")
    deadline = time.monotonic() + 30
    while not list(work.glob("site/experiments/slow.sh")) or \
            not left_running(str(work), within=0):
        assert time.monotonic() < deadline, "the remote run never started"
        time.sleep(0.1)
    time.sleep(1.0)  # a few samples in
    # A second visit meanwhile would replace the copy the run is using: it is refused.
    second = site.chronicle("lab", "run", "--on", "loop", "slow")
    assert second.returncode == 1
    assert f"host 'loop': busy, another `lab run --on` is using {work}" in second.stderr
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert left_running(str(work), within=5) == []
    (kept,) = site.store().runs("slow")
    assert kept.status == "cancelled" and 0 < len(kept.samples) < 400


def test_setup_on_a_host_prepares_its_working_folder(site, servers, tmp_path):
    server = servers("a")
    work = tmp_path / "work"
    hosts_file(site, server.host_table("loop", work))
    done = site.chronicle("lab", "setup", "--on", "loop", "--skip-incus", "--skip-qemu")
    assert done.returncode == 0, done.stderr
    assert "guest kernel and initramfs" in done.stdout and "lab ready" in done.stdout
    # The guest assets are the host's own, in its copy of the site, kept across visits.
    assert list((work / "site" / ".lab").rglob("vmlinux*"))
    assert (work / "chronicle" / "chronicle" / "__init__.py").is_file()
