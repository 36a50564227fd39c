"""Runs left behind by a killed ``lab run``, found and ended by the next one (or the doctor).

SIGKILL gives ``lab run`` no chance to clean up: its script, the script's guests and
helpers go on running. So every run keeps a small record in
``.chronicle/lab/runs/<run>.json`` from before it makes anything until its clean-up is
done: who owns it (pid *and* start time, so a reused pid is never taken for the owner),
the experiment, where its processes are held and, for a run through a remote Incus API
(``lab run --incus HOST``), that remote. A record whose owner is gone is a run nobody
will clean up: ``sweep`` ends its processes (its cgroup, or every process still carrying
the run's name in its environment), deletes the Incus instances it created (through the
remote's API when it had one), and drops the record. A live owner's run is never
touched; a record whose remote does not answer is kept, to be tried again.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from chronicle.errors import LabError
from chronicle.lab.containment import PARENT, cgroup_procs, end_cgroup, kill_all, tagged_pids
from chronicle.lab.lock import ExperimentLock
from chronicle.lab.probes import process_cmdline
from chronicle.lab.procgroup import stat_fields
from chronicle.swap import atomic_write, temp_writer


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot): with the pid, unique."""
    fields = stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[19])


def run_name(experiment: str) -> str:
    from chronicle.lab.subjects.base import unique_name

    return unique_name(experiment).removeprefix("chronicle-")


@dataclass(frozen=True)
class RunRecord:
    run: str
    experiment: str
    owner: int
    owner_start: int
    cgroup: str | None
    incus: dict[str, Any] | None = None  # the ``Remote`` a run with --incus talked to

    @classmethod
    def mine(cls, run: str, experiment: str, cgroup: Path | None,
             incus: Any = None) -> RunRecord:
        pid = os.getpid()
        return cls(run, experiment, pid, start_time(pid) or 0,
                   str(cgroup) if cgroup else None, asdict(incus) if incus else None)

    def owner_alive(self) -> bool:
        return start_time(self.owner) == self.owner_start


def runs_dir(cache: Path) -> Path:
    return cache / "lab" / "runs"


def keep(cache: Path, record: RunRecord) -> Path:
    """Write the record (whole or not at all: a sweep may read it at any moment)."""
    path = runs_dir(cache) / f"{record.run}.json"
    atomic_write(path, (json.dumps(asdict(record), sort_keys=True) + "\n").encode())
    return path


def drop(cache: Path, record: RunRecord) -> None:
    (runs_dir(cache) / f"{record.run}.json").unlink(missing_ok=True)


def _records(cache: Path) -> list[tuple[Path, RunRecord | None]]:
    folder = runs_dir(cache)
    if not folder.is_dir():
        return []
    found: list[tuple[Path, RunRecord | None]] = []
    for path in sorted(folder.iterdir()):
        if path.name.endswith(".tmp"):
            # a record being written, or one its killed writer left
            writer = temp_writer(path.name)
            if writer is None or start_time(writer) is None:
                path.unlink(missing_ok=True)
            continue
        try:
            found.append((path, RunRecord(**json.loads(path.read_text()))))
        except (OSError, ValueError, TypeError):
            found.append((path, None))
    return found


def sweep(cache: Path) -> list[str]:
    """End every run whose owner is gone; one line per run saying what was ended."""
    said = []
    for path, record in _records(cache):
        if record is None:
            said.append(f"removed unreadable run record {path}")
            path.unlink(missing_ok=True)
            continue
        if record.owner_alive():
            continue
        try:
            ended = _end_run(cache, record)
        except _Unreachable as exc:
            # Its processes are ended; its instances are still there: try again next time.
            said.append(f"run {record.run} of {record.experiment} left by pid "
                        f"{record.owner} (no longer running): {exc.message}; its Incus "
                        f"instances there are deleted by a later run, or delete {path}")
            continue
        path.unlink(missing_ok=True)
        what = ", ".join(ended) if ended else "nothing was left running"
        said.append(f"swept run {record.run} of {record.experiment} left by pid "
                    f"{record.owner} (no longer running): {what}")
    return said


def _end_run(cache: Path, record: RunRecord) -> list[str]:
    folder = Path(record.cgroup) if record.cgroup else None
    if folder is not None and (folder.name != record.run or folder.parent.name != PARENT):
        # Anyone with the site can edit a record: it must not aim cgroup.kill elsewhere.
        raise LabError(f"run record names {folder}, not a cgroup Chronicle made for "
                       f"run {record.run}", runs_dir(cache) / f"{record.run}.json")
    pids = set(tagged_pids(record.run))
    if folder is not None and folder.is_dir():
        pids |= set(cgroup_procs(folder))
    named = [f"process {pid} ({_name(pid)})" for pid in sorted(pids)
             if start_time(pid) is not None]
    if folder is not None and not end_cgroup(folder):
        raise LabError(f"cannot remove the cgroup of a run left behind: {folder}")
    kill_all(sorted(pids))  # what a cgroup did not hold (or all of it, without one)
    return named + [f"Incus instance {name}" for name in _incus(cache, record)]


def _name(pid: int) -> str:
    argv = process_cmdline(pid)
    shown = " ".join([Path(argv[0]).name, *argv[1:]]) if argv else "?"
    return shown if len(shown) <= 60 else shown[:59] + "…"


class _Unreachable(LabError):
    """The remote Incus API a dead run used does not answer (or no longer trusts us)."""


def _incus(cache: Path, record: RunRecord) -> list[str]:
    """The run's instances: tagged with its name, or named for its experiment when no
    live run of that experiment (its lock is free) can own them."""
    from pylxd.exceptions import LXDAPIException

    from chronicle.lab.subjects.base import made_by
    from chronicle.lab.subjects.incus import RUN_KEY, delete_instance

    if record.incus is not None:
        client, where, instances = _remote_instances(cache, record)
    else:
        from chronicle.lab import host

        if not host.incus_socket().exists():
            return []
        try:
            client, where = host.incus_client(timeout=10), ""
            _wait_for_creates(client)
            instances = client.instances.all()
        except Exception:  # no daemon answering: nothing of ours can be running in it
            return []
    lock = ExperimentLock(cache, record.experiment)
    try:
        lock.acquire()
        free = True
    except LabError:
        free = False
    try:
        gone = []
        for instance in instances:
            tag = (instance.config or {}).get(RUN_KEY)
            # An untagged instance named for the experiment was made by hand through
            # unique_name; a tagged one belongs to the run its tag names, and only that.
            # Our lock says nothing of a remote's other clients: there, only the tag counts.
            if tag == record.run or (free and tag is None and record.incus is None
                                     and made_by(instance.name, record.experiment)):
                try:
                    delete_instance(instance)
                except LXDAPIException:
                    continue
                gone.append(instance.name + where)
        return gone
    finally:
        lock.release()


def _remote_instances(cache: Path, record: RunRecord) -> tuple[Any, str, list[Any]]:
    """A client on the remote Incus API the run used (held to its pinned certificate),
    `` on HOST`` for messages, and the instances there."""
    from pylxd.exceptions import LXDAPIException
    from requests.exceptions import RequestException

    from chronicle.lab.incus_remote import Remote

    try:
        remote = Remote(**(record.incus or {}))
    except TypeError:
        raise LabError(f"run record names a remote Incus Chronicle cannot read: "
                       f"{record.incus!r}", runs_dir(cache) / f"{record.run}.json") from None
    try:
        client = remote.client(timeout=10)
        _wait_for_creates(client)
        return client, f" on {remote.host}", client.instances.all()
    except LabError as exc:
        raise _Unreachable(exc.message) from None
    except (LXDAPIException, RequestException) as exc:
        raise _Unreachable(f"host {remote.host!r}: the Incus API at {remote.url} does not "
                           f"answer ({exc})") from None


def _wait_for_creates(client: Any, wait: float = 20.0) -> None:
    """A create request under way when its run was killed is finished by the daemon
    anyway: wait for such requests, or their instance would appear after the sweep."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        listed = client.api.operations.get(params={"recursion": 1}).json()
        running = (listed.get("metadata") or {}).get("running") or []
        names = [url.rsplit("/", 1)[-1] for op in running
                 for url in (op.get("resources") or {}).get("instances") or []]
        if not any(name.startswith("chronicle-") for name in names):
            return
        time.sleep(0.1)
