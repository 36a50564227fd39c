"""Incus over HTTPS: the local daemon's API on 127.0.0.1, trusted through a real token,
is a remote Incus host (``lab trust``, ``lab run --incus``, ``lab hosts``)."""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
import sys
import time

import pytest

from chronicle.lab import leftovers
from chronicle.lab.incus_remote import fingerprint
from chronicle.lab.probes import free_port
from chronicle.lab.results import ResultStore
from chronicle.lab.subjects.base import made_by
from tests.support import REPO, LoopbackIncus, interrupt_when, make_site, write_script

from .conftest import cli_env

HOST = "incusbox"


def chronicle(root, lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chronicle", "lab", *args, "--root", str(root)],
                          capture_output=True, text=True, timeout=120,
                          env={**cli_env(), "CHRONICLE_LAB_DIR": str(lab)})


@pytest.fixture
def incus_https(tmp_path):
    loopback = LoopbackIncus(tmp_path / "lab")
    try:
        yield loopback.start()
    finally:
        loopback.stop()


@pytest.fixture
def trusted(tmp_path, incus_https):
    """A site whose lab host ``incusbox`` is the local Incus over HTTPS, trusted, with
    the footprint experiment."""
    root = make_site(tmp_path / "blog")
    (root / "experiments").mkdir()
    shutil.copy(REPO / "experiments" / "footprint.py", root / "experiments")
    (root / "site" / "lab.toml").write_text(incus_https.host_table(HOST))
    done = chronicle(root, incus_https.lab, "trust", HOST, "--token", incus_https.token())
    assert done.returncode == 0, done.stderr
    return root


def served_fingerprint(port: int) -> str:
    return fingerprint(ssl.get_server_certificate(("127.0.0.1", port)))


def test_trust_pins_the_servers_certificate_and_is_trusted(trusted, incus_https):
    again = chronicle(trusted, incus_https.lab, "trust", HOST)
    assert again.returncode == 0, again.stderr
    assert f"sha256 {served_fingerprint(incus_https.port)} (already pinned)" in again.stdout
    assert "trusted" in again.stdout.splitlines()[-1]
    hosts = chronicle(trusted, incus_https.lab, "hosts")
    row = next(line for line in hosts.stdout.splitlines() if HOST in line)
    assert "(none)" in row and "trusted" in row, hosts.stdout
    on = chronicle(trusted, incus_https.lab, "run", "footprint", "--on", HOST)
    assert on.returncode == 1 and f"--incus {HOST}" in on.stderr


def test_an_incus_subject_boots_through_the_https_api(trusted, incus_https):
    done = chronicle(trusted, incus_https.lab, "run", "footprint", "--incus", HOST,
                     "--quick", "--repeat", "1")
    assert done.returncode == 0, done.stderr
    result = ResultStore(trusted / "experiments" / "results").runs("footprint")[-1]
    facts = result.provenance
    assert facts["lab_host"] == HOST
    assert facts["incus_remote"]["url"] == incus_https.url
    assert facts["incus_remote"]["fingerprint"] == served_fingerprint(incus_https.port)
    container = facts["subjects"]["incus-container"]
    assert "pss_mib" in container["incus_remote"]["not_taken"]
    metrics = {s.metric for s in result.samples if s.subject == "incus-container"}
    assert "cgroup_mib" in metrics and "pss_mib" not in metrics
    assert "--on incusbox" in facts["subjects"]["qemu-microvm"]["reason"]
    assert [i.name for i in incus_https.client.instances.all()
            if made_by(i.name, "footprint")] == []


def test_a_changed_server_certificate_is_refused(trusted, incus_https):
    pinned = incus_https.lab / "incus" / "servers" / f"{HOST}.crt"
    other = incus_https.lab / "incus" / "client.crt"
    pinned.write_bytes(other.read_bytes())
    done = chronicle(trusted, incus_https.lab, "run", "footprint", "--incus", HOST)
    assert done.returncode == 1
    assert f"host {HOST!r}" in done.stderr
    assert served_fingerprint(incus_https.port) in done.stderr
    assert fingerprint(other.read_bytes()) in done.stderr
    assert "Traceback" not in done.stderr


def test_without_a_token_the_certificate_is_pinned_but_not_trusted(tmp_path, incus_https):
    root = make_site(tmp_path / "blog")
    (root / "site" / "lab.toml").write_text(incus_https.host_table(HOST))
    done = chronicle(root, incus_https.lab, "trust", HOST)
    assert done.returncode == 1
    assert f"sha256 {served_fingerprint(incus_https.port)} (pinned)" in done.stdout
    assert "not trusted yet" in done.stderr and "incus config trust add" in done.stderr
    hosts = chronicle(root, incus_https.lab, "hosts")
    assert hosts.returncode == 1
    assert "does not trust" in hosts.stdout


def test_an_api_that_does_not_answer_is_a_clear_error(tmp_path):
    root = make_site(tmp_path / "blog")
    (root / "site" / "lab.toml").write_text(
        f'[hosts.{HOST}]\nssh = "root@127.0.0.1"\nport = 1\n'
        f'incus = "https://127.0.0.1:{free_port()}"\n')
    done = chronicle(root, tmp_path / "lab", "trust", HOST)
    assert done.returncode == 1
    assert f"host {HOST!r}" in done.stderr and "does not answer" in done.stderr
    assert "Traceback" not in done.stderr


def test_incus_target_must_be_a_string(tmp_path):
    root = make_site(tmp_path / "blog")
    (root / "site" / "lab.toml").write_text(
        f'[hosts.{HOST}]\nssh = "root@127.0.0.1"\nincus = "https://127.0.0.1:8443"\n'
        "incus_target = 2\n")
    done = chronicle(root, tmp_path / "lab", "trust", HOST)
    assert done.returncode == 1
    assert "lab.toml:4" in done.stderr and f"'hosts.{HOST}.incus_target'" in done.stderr


def test_a_target_on_a_daemon_not_clustered_is_refused(trusted, incus_https):
    (trusted / "site" / "lab.toml").write_text(
        incus_https.host_table(HOST, incus_target="member1"))
    done = chronicle(trusted, incus_https.lab, "run", "footprint", "--incus", HOST)
    assert done.returncode == 1
    assert "not clustered" in done.stderr and "member1" in done.stderr
    assert "Traceback" not in done.stderr


SIGTERM_DEAF = """\
#!/usr/bin/env python3
# /// chronicle
# title = "deaf"
# timeout = 8
# ///
import signal, time
from chronicle.lab import host
from chronicle.lab.subjects.base import unique_name
signal.signal(signal.SIGTERM, signal.SIG_IGN)
config = {"name": unique_name("deaf"), "type": "container", "profiles": ["default"],
          "source": {"type": "image", "alias": "chronicle-busybox"}}
host.incus_client().instances.create(config, wait=True).start(wait=True)
print('{"subject": "a", "metric": "m", "value": 1, "unit": "", "run": 0}', flush=True)
time.sleep(600)
"""


def test_the_runner_deletes_what_a_killed_script_left_on_the_remote(
        trusted, incus_https, monkeypatch, tmp_path):
    """A script deaf to SIGTERM dies by SIGKILL: the runner deletes the instance it made
    through the remote API, though this machine's own Incus (hidden here) has none. An
    instance of the same experiment that another client's run has there (its tag says
    so) is not ours to delete."""
    from chronicle.lab import experiment as exp
    from chronicle.lab import incus_remote, runner
    from chronicle.lab.hosts import load_hosts
    from chronicle.lab.image import BUSYBOX_ALIAS
    from chronicle.lab.subjects.base import unique_name
    from chronicle.lab.subjects.incus import instance_config

    monkeypatch.setenv("INCUS_DIR", str(tmp_path / "no-incus-here"))
    write_script(trusted, "deaf", SIGTERM_DEAF)
    remote = incus_remote.remote(incus_https.lab, load_hosts(trusted)[HOST])
    experiment = next(e for e in exp.discover(trusted) if e.name == "deaf")
    theirs = unique_name("deaf")
    incus_https.client.instances.create(
        instance_config(theirs, BUSYBOX_ALIAS, "container", run=leftovers.run_name("deaf")),
        wait=True)
    try:
        result = runner.run(experiment, ResultStore(trusted / "experiments" / "results"),
                            runner.RunOptions(grace=1.0, lab_host=HOST, incus=remote))
        assert result.status == "failed" and "timed out" in (result.error or "")
        assert "deleted leftover Incus instance chronicle-deaf-" in result.log
        assert [i.name for i in incus_https.client.instances.all()
                if made_by(i.name, "deaf")] == [theirs]
    finally:
        for instance in incus_https.client.instances.all():
            if made_by(instance.name, "deaf"):
                instance.delete(wait=True)


def test_ctrl_c_leaves_no_instance_on_the_remote(trusted, incus_https, tmp_path):
    """Ctrl-C while an instance made through the API is up: the run is cancelled and the
    instance deleted through the API (this machine's own Incus is hidden from the CLI)."""
    def ours() -> list[str]:
        return [i.name for i in incus_https.client.instances.all()
                if made_by(i.name, "footprint")]

    proc = subprocess.Popen(
        [sys.executable, "-m", "chronicle", "lab", "run", "footprint", "--incus", HOST,
         "--root", str(trusted)],
        env={**cli_env(), "CHRONICLE_LAB_DIR": str(incus_https.lab),
             "INCUS_DIR": str(tmp_path / "no-incus-here")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    stderr, _ = interrupt_when(proc, signal.SIGINT, lambda now, seen: bool(ours()),
                               within=60)
    assert proc.returncode == 130, stderr.decode()
    assert ours() == []


ORPHANING = """\
#!/usr/bin/env python3
# /// chronicle
# title = "orphaning"
# timeout = 60
# ///
import os, time
from chronicle.lab import host
from chronicle.lab.image import BUSYBOX_ALIAS
from chronicle.lab.subjects.base import unique_name
from chronicle.lab.subjects.incus import instance_config
config = instance_config(unique_name("orphaning"), BUSYBOX_ALIAS, "container",
                         run=os.environ["CHRONICLE_RUN"])
host.incus_client().instances.create(config, wait=True)
time.sleep(600)
"""

NEXT = """\
#!/usr/bin/env python3
# /// chronicle
# title = "next"
# ///
print('{"subject": "a", "metric": "m", "value": 1, "unit": "", "run": 0}')
"""


def test_a_killed_run_s_remote_instances_are_swept_by_the_next_run(trusted, incus_https,
                                                                    tmp_path):
    """SIGKILL of `lab run --incus` itself cleans nothing up; the next `lab run` — a plain
    local one, this machine's own Incus hidden from it — deletes through the remote's API
    what the killed run made there."""
    def ours() -> list[str]:
        return [i.name for i in incus_https.client.instances.all()
                if made_by(i.name, "orphaning")]

    write_script(trusted, "orphaning", ORPHANING)
    write_script(trusted, "next", NEXT)
    env = {**cli_env(), "CHRONICLE_LAB_DIR": str(incus_https.lab),
           "INCUS_DIR": str(tmp_path / "no-incus-here")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chronicle", "lab", "run", "orphaning", "--incus", HOST,
         "--root", str(trusted)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not ours():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        left = ours()
        done = subprocess.run([sys.executable, "-m", "chronicle", "lab", "run", "next",
                               "--root", str(trusted)],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        said = " ".join(done.stderr.split())  # the console wraps long lines
        assert "swept run orphaning-" in said
        assert f"Incus instance {left[0]} on {HOST}" in said
        assert ours() == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # what a failed sweep left: the script (its cgroup) and the instance
        leftovers.sweep(trusted / ".chronicle")
        for name in ours():
            incus_https.client.instances.get(name).delete(wait=True)


def test_a_dead_run_s_record_is_kept_while_its_remote_does_not_answer(trusted, incus_https):
    """Its remote down, a dead run's instances cannot be deleted yet: the record stays and
    the sweep says why; once the API answers, the next sweep deletes them."""
    from dataclasses import replace

    from chronicle.lab import incus_remote
    from chronicle.lab.hosts import load_hosts
    from chronicle.lab.image import BUSYBOX_ALIAS
    from chronicle.lab.subjects.base import unique_name
    from chronicle.lab.subjects.incus import instance_config

    cache = trusted / ".chronicle"
    remote = incus_remote.remote(incus_https.lab, load_hosts(trusted)[HOST])
    owner = subprocess.Popen(["true"])
    started = leftovers.start_time(owner.pid) or 1
    owner.wait()
    run = leftovers.run_name("gone")
    name = unique_name("gone")
    incus_https.client.instances.create(
        instance_config(name, BUSYBOX_ALIAS, "container", run=run), wait=True)
    def dead_run_on(on: incus_remote.Remote) -> None:
        record = leftovers.RunRecord.mine(run, "gone", None, on)
        leftovers.keep(cache, replace(record, owner=owner.pid, owner_start=started))

    try:
        dead_run_on(replace(remote, url=f"https://127.0.0.1:{free_port()}"))
        said = leftovers.sweep(cache)
        assert len(said) == 1 and "does not answer" in said[0], said
        assert (leftovers.runs_dir(cache) / f"{run}.json").exists()
        assert incus_https.client.instances.exists(name)
        dead_run_on(remote)
        said = leftovers.sweep(cache)
        assert len(said) == 1 and f"Incus instance {name} on {HOST}" in said[0], said
        assert not incus_https.client.instances.exists(name)
        assert list(leftovers.runs_dir(cache).iterdir()) == []
    finally:
        if incus_https.client.instances.exists(name):
            incus_https.client.instances.get(name).delete(wait=True)


def test_a_remote_reached_by_a_name_its_certificate_does_not_list_is_trusted_by_pin(
        tmp_path, incus_https):
    # Incus names its certificate after the machine (here: its hostname and loopback
    # addresses); a remote is often reached by another name. The pin is the check, as
    # for `incus remote add`: the name in the URL need not be in the certificate.
    root = make_site(tmp_path / "blog")
    (root / "site" / "lab.toml").write_text(
        incus_https.host_table(HOST).replace("127.0.0.1", "localhost"))
    done = chronicle(root, incus_https.lab, "trust", HOST, "--token", incus_https.token())
    assert done.returncode == 0, done.stderr
    (root / "experiments").mkdir()
    shutil.copy(REPO / "experiments" / "footprint.py", root / "experiments")
    run = chronicle(root, incus_https.lab, "run", "footprint", "--incus", HOST, "--quick",
                    "--repeat", "1")
    assert run.returncode == 0, run.stderr
    booted = ResultStore(root / "experiments" / "results").runs("footprint")[-1]
    assert booted.values("incus-container", "cgroup_mib"), booted.log
