"""A run left behind by a killed ``lab run`` is ended by the next ``lab run`` or doctor."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chronicle.errors import LabError
from chronicle.lab import leftovers
from chronicle.lab.procgroup import alive
from chronicle.swap import temp_writer
from tests.support import file_size_limit, killed_while_writing_a_run_record, require

from .conftest import cli_env

STUCK = """
setsid sh -c 'echo $$ > {pidfile}; exec sleep 1000' > /dev/null 2>&1 &
echo $$ > {scriptfile}
sleep 1000
"""


def _killed_mid_run(site, tmp_path: Path, name: str) -> tuple[int, int]:
    """Start ``lab run NAME``, SIGKILL it once its script and helper run; their pids."""
    helper, script = tmp_path / f"{name}.helper", tmp_path / f"{name}.script"
    site.script(name, STUCK.format(pidfile=helper, scriptfile=script), suffix=".sh")
    proc = subprocess.Popen(
        [sys.executable, "-m", "chronicle", "lab", "run", name, "--root", str(site.root)],
        env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (helper.exists() and helper.read_text() and script.exists()
               and script.read_text()):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    return int(helper.read_text()), int(script.read_text())


def test_doctor_ends_the_script_and_helper_of_a_killed_lab_run(site, tmp_path):
    pids = _killed_mid_run(site, tmp_path, "orphaned")
    assert all(alive(p) for p in pids)  # nothing else would ever end them
    done = site.chronicle("lab", "doctor")
    assert done.returncode == 0, done.stderr
    assert "swept run orphaned-" in done.stderr and "sleep 1000" in done.stderr
    assert not any(alive(p) for p in pids)
    assert list((site.root / ".chronicle" / "lab" / "runs").iterdir()) == []
    assert not site.results.exists() or list(site.results.rglob("*.json")) == []


def test_next_lab_run_ends_a_killed_runs_leftovers_first(site, tmp_path):
    pids = _killed_mid_run(site, tmp_path, "orphaned")
    site.script("next", """echo '{"subject": "a", "metric": "m", "value": 1, "unit": "",
        "run": 0}' | tr -d '\\n'; echo""", suffix=".sh")
    done = site.chronicle("lab", "run", "next")
    assert done.returncode == 0, done.stderr
    assert "swept run orphaned-" in done.stderr and "next: ok" in done.stderr
    assert not any(alive(p) for p in pids)


def _tagged_sleeper(run: str) -> subprocess.Popen:
    return subprocess.Popen(["sleep", "1000"], env={**os.environ, "CHRONICLE_RUN": run})


def test_a_live_owners_run_is_never_touched(tmp_path):
    run = f"live-{secrets.token_hex(4)}"
    record = leftovers.RunRecord.mine(run, "live", None)
    leftovers.keep(tmp_path, record)
    sleeper = _tagged_sleeper(run)
    try:
        assert leftovers.sweep(tmp_path) == []
        assert sleeper.poll() is None
        assert (leftovers.runs_dir(tmp_path) / f"{run}.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_reused_pid_is_not_taken_for_the_owner(tmp_path):
    # Our pid, but not our start time: the owner died and its pid went to someone else.
    run = f"reused-{secrets.token_hex(4)}"
    mine = leftovers.RunRecord.mine(run, "reused", None)
    leftovers.keep(tmp_path, leftovers.RunRecord(**{**mine.__dict__,
                                                    "owner_start": mine.owner_start - 1}))
    sleeper = _tagged_sleeper(run)
    try:
        said = leftovers.sweep(tmp_path)
        assert sleeper.wait(timeout=10) == -signal.SIGKILL
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    assert len(said) == 1 and f"swept run {run} of reused" in said[0]
    assert list(leftovers.runs_dir(tmp_path).iterdir()) == []


def test_a_record_that_cannot_be_written_leaves_no_temporary_file(tmp_path):
    record = leftovers.RunRecord.mine("no-room", "no-room", None)
    with file_size_limit(10), pytest.raises(OSError):
        leftovers.keep(tmp_path, record)
    assert list(leftovers.runs_dir(tmp_path).iterdir()) == []


def test_half_a_record_is_swept_once_its_writer_is_dead_and_kept_while_alive(tmp_path):
    left = killed_while_writing_a_run_record(tmp_path)
    writer = temp_writer(left.name)
    assert writer is not None and leftovers.start_time(writer) is None
    # the same file, had its writer been this live process
    alive = left.rename(left.with_name(left.name.replace(f".{writer}.", f".{os.getpid()}.")))
    assert leftovers.sweep(tmp_path) == [] and alive.exists()
    alive.rename(left)
    assert leftovers.sweep(tmp_path) == [] and not left.exists()


def test_sweep_deletes_the_incus_instances_a_dead_run_created(tmp_path):
    from chronicle.lab.image import BUSYBOX_ALIAS
    from chronicle.lab.subjects.base import unique_name
    from chronicle.lab.subjects.incus import instance_config
    from tests.support import incus_client

    client = incus_client()
    owner = subprocess.Popen(["sleep", "0.3"])
    started = leftovers.start_time(owner.pid)
    owner.wait()
    experiment = f"dead-{secrets.token_hex(3)}"
    run = leftovers.run_name(experiment)
    leftovers.keep(tmp_path, leftovers.RunRecord(run, experiment, owner.pid, started, None))
    # named for another experiment: only the run's tag says whose it is
    name = unique_name("someone-else")
    client.instances.create(instance_config(name, BUSYBOX_ALIAS, "container", run=run),
                            wait=True)
    try:
        said = leftovers.sweep(tmp_path)
        assert not client.instances.exists(name)
        assert len(said) == 1 and f"Incus instance {name}" in said[0]
    finally:
        if client.instances.exists(name):
            client.instances.get(name).delete(wait=True)


def test_a_record_naming_a_cgroup_not_made_for_its_run_is_refused(tmp_path):
    # The record is a file anyone with the site can edit: it must not be able to point
    # the sweep at, say, the root cgroup, whose cgroup.kill would end every process.
    from chronicle.lab.containment import runs_parent

    parent = runs_parent()[0]
    require(parent is not None, "a writable cgroup v2 hierarchy")
    foreign = parent.parent / f"not-ours-{secrets.token_hex(3)}"
    foreign.mkdir()
    sleeper = subprocess.Popen(["sleep", "1000"])
    try:
        (foreign / "cgroup.procs").write_text(str(sleeper.pid))
        owner = subprocess.Popen(["true"])
        started = leftovers.start_time(owner.pid) or 1
        owner.wait()
        run = leftovers.run_name("forged")
        leftovers.keep(tmp_path, leftovers.RunRecord(run, "forged", owner.pid, started,
                                                     str(foreign)))
        with pytest.raises(LabError, match="not a cgroup Chronicle made"):
            leftovers.sweep(tmp_path)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
        foreign.rmdir()
