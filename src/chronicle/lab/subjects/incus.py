"""Incus containers and VMs through pylxd, timed from the create request.

t0 is taken just before the create request (the image is already imported, so this is
a clone on the btrfs pool). We record create → status Running (``running_ms``),
create → first successful ``exec true`` (``boot_ms``: the instance can run our code)
and, with ``http_port``, create → HTTP answering on 127.0.0.1 through a proxy device,
or for a VM through qemu's ``hostfwd`` (see ``instance_config``; the busybox image's
init starts httpd when ``environment.CHRONICLE_HTTP=1``).

Memory: the cgroup's ``usage`` and ``usage_peak`` from ``state()`` — these include page
cache, and for a VM they come from the in-guest agent instead, so they are reported
apart — and the PSS of every host process that exists for the instance: the payload
cgroup's processes plus the ``[lxc monitor]`` above them; for a VM, its qemu. Through a
remote host's API (``lab run --incus HOST``) only the API's figures are taken; the facts
say which were not and why.

Names are ``chronicle-<experiment>-<random>``; clean-up force-stops and deletes the
instance (and with it its proxy device and root volume), even when the create request
was cut short by Ctrl-C and the instance appears only afterwards.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from chronicle.errors import LabError
from chronicle.lab import host
from chronicle.lab.containment import RUN_ENV
from chronicle.lab.image import BUSYBOX_ALIAS
from chronicle.lab.probes import (
    cgroup_of,
    cgroup_pids,
    http_answers,
    parent_of,
    process_cmdline,
    total_memory,
)
from chronicle.lab.subjects.base import (
    BootTimeout,
    Footprint,
    Subject,
    SubjectError,
    Terminated,
    Timings,
    Unsupported,
    made_by,
    unique_name,
)

KINDS = {"container": "incus-container", "virtual-machine": "incus-vm"}
RUN_KEY = "user.chronicle.run"


def instance_config(
    name: str, alias: str, kind: str, http_port: int | None = None, run: str | None = None,
    app_port: int = 80, limits: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The create request: image by alias, the default profile (root disk, no network),
    and ``limits`` (``limits.*`` keys, e.g. a VM's memory) if given.

    ``run`` (the runner's name for this run) is kept in the instance's config, so the
    instances of a run whose ``lab run`` was killed can be found and deleted later.
    """
    config: dict[str, Any] = {
        "name": name,
        "type": kind,
        "source": {"type": "image", "alias": alias},
        "profiles": ["default"],
        "config": {**(limits or {}), **({RUN_KEY: run} if run else {})},
        "devices": {},
    }
    if kind == "virtual-machine":
        # Our images boot unsigned (systemd-boot, or a busybox kernel): no Secure Boot.
        config["config"]["security.secureboot"] = "false"
    if http_port is None:
        return config
    config["config"]["environment.CHRONICLE_HTTP"] = "1"
    if kind == "virtual-machine":
        # A VM's proxy device works in NAT mode only, which forwards to the instance's
        # address on a managed bridge. Instead, qemu's own user-mode network forwards
        # from 127.0.0.1 — the very probe path of the microVMs (``hostfwd``).
        config["config"]["raw.qemu"] = (
            f"-netdev user,id=chronicle,hostfwd=tcp:127.0.0.1:{http_port}-:{app_port} "
            "-device virtio-net-pci,netdev=chronicle")
        return config
    # The host end listens on loopback only; the container end is its own loopback.
    config["devices"]["http"] = {
        "type": "proxy",
        "listen": f"tcp:127.0.0.1:{http_port}",
        "connect": f"tcp:127.0.0.1:{app_port}",
    }
    return config


def payload_cgroup(pid: int) -> Path | None:
    """The instance's own cgroup (``lxc.payload.<name>``), even if init sits below it."""
    group = cgroup_of(pid)
    if group is None:
        return None
    for folder in (group, *group.parents):
        if folder.name.startswith("lxc.payload."):
            return folder
    return group


class IncusInstance(Subject):
    """One Incus instance of ``kind`` (``container`` or ``virtual-machine``)."""

    def __init__(
        self,
        client: Any,
        *,
        experiment: str,
        kind: str = "container",
        alias: str = BUSYBOX_ALIAS,
        http_port: int | None = None,
        app_port: int = 80,
        remote: Any = None,
        limits: dict[str, str] | None = None,
    ):
        """``remote``: the ``incus_remote.Remote`` that ``client`` talks to, if not the
        local socket; its host's /proc is out of reach, so PSS and RSS are not taken."""
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, not {kind!r}")
        self.client = client
        self.kind = kind
        self.name = KINDS[kind]
        self.alias = alias
        self.http_port = http_port
        self.app_port = app_port
        self.limits = limits
        self.remote = remote
        self.instance_name = unique_name(experiment)
        self.instance: Any = None
        self.requested = False  # a create request went out: clean-up must look for it
        self.t0 = 0.0
        self.running_at: float | None = None

    @classmethod
    def check(cls, client: Any, kind: str = "container") -> None:
        if kind == "virtual-machine":
            supported, reason = host.incus_vm_support(client)
            if not supported:
                raise Unsupported(f"Incus VMs unsupported on this host: {reason}")

    def facts(self) -> dict[str, Any]:
        from chronicle.lab import host

        facts: dict[str, Any] = {
            "incus_version": host.incus_version(self.client),
            "image": self.alias,
            "kind": self.kind,
        }
        env = self.client.host_info.get("environment", {})
        facts["storage"] = env.get("storage", "")
        if self.kind == "virtual-machine":
            facts["accelerator"] = "kvm"
            # This machine's KVM says nothing of a remote's; the API does not tell.
            facts["kvm_kind"] = host.kvm_kind() if self.remote is None else None
        if self.remote is not None:
            facts["incus_remote"] = self.remote.provenance()
        return facts

    def start(self) -> None:
        config = instance_config(self.instance_name, self.alias, self.kind, self.http_port,
                                 run=os.environ.get(RUN_ENV), app_port=self.app_port,
                                 limits=self.limits)
        from pylxd.exceptions import LXDAPIException

        self.t0 = time.monotonic()
        self.requested = True
        try:
            self.instance = self.client.instances.create(
                config, wait=True, target=self.remote.target if self.remote else None)
        except LXDAPIException as exc:
            self.requested = False  # the daemon refused: there is nothing to clean up
            raise SubjectError(f"{self.name}: cannot create {self.instance_name}: {exc}") from exc
        try:
            self.instance.start(wait=True)
        except LXDAPIException as exc:
            raise SubjectError(f"{self.name}: cannot start {self.instance_name}: {exc}") from exc
        self.running_at = time.monotonic()

    def wait_booted(self, timeout: float) -> Timings:
        assert self.instance is not None and self.running_at is not None, "start() first"
        deadline = self.t0 + timeout
        status = self.instance.state().status
        if status != "Running":
            raise SubjectError(f"{self.name}: {self.instance_name} is {status} after start")
        exec_at = self._first_exec(deadline)
        http_at = self._http(deadline) if self.http_port else None
        return Timings(
            boot_ms=(exec_at - self.t0) * 1000.0,
            running_ms=(self.running_at - self.t0) * 1000.0,
            http_ms=(http_at - self.t0) * 1000.0 if http_at else None,
        )

    def _first_exec(self, deadline: float) -> float:
        last = ""
        while time.monotonic() < deadline:
            try:
                code = exec_status(self.client, self.instance_name, ["true"])
                if code == 0:
                    return time.monotonic()
                last = f"exit code {code}"
            except Exception as exc:  # the agent or init may not be ready yet
                last = str(exc)
            time.sleep(0.02)
        raise BootTimeout(f"{self.name}: no successful exec in {self.instance_name} ({last})")

    def _http(self, deadline: float) -> float:
        while time.monotonic() < deadline:
            if http_answers(self.http_port or 0, timeout=0.2):
                return time.monotonic()
            time.sleep(0.02)
        raise BootTimeout(
            f"{self.name}: nothing answered HTTP on 127.0.0.1:{self.http_port} "
            f"for {self.instance_name}"
        )

    def measure(self) -> Footprint:
        assert self.instance is not None, "start() first"
        state = self.instance.state()
        memory = state.memory or {}
        root = (state.disk or {}).get("root") or {}
        image = self.client.images.get_by_alias(self.alias)
        if self.remote is not None:
            # Only what the API reports; PSS and RSS would be this machine's processes.
            return Footprint(pss=None, rss=None, disk=root.get("usage"),
                             cgroup=memory.get("usage"), cgroup_peak=memory.get("usage_peak"),
                             image=image.size)
        payload, monitor = self._host_pids(state.pid)
        usage = total_memory(payload + monitor)
        monitor_usage = total_memory(monitor)
        return Footprint(
            pss=usage.pss_kib * 1024,
            rss=usage.rss_kib * 1024,
            disk=root.get("usage"),
            cgroup=memory.get("usage"),
            cgroup_peak=memory.get("usage_peak"),
            image=image.size,
            detail={
                "pids": len(usage.pids),
                "monitor_pss_mib": round(monitor_usage.pss_kib / 1024, 3),
            },
        )

    def _host_pids(self, init_pid: int) -> tuple[list[int], list[int]]:
        """The host processes that exist for this instance: (payload, monitor)."""
        if not init_pid or init_pid < 0:
            return [], []
        if self.kind == "virtual-machine":
            # init_pid is qemu itself: its parent is the shared daemon, not counted, and
            # its cgroup is not the instance's alone. The guest's memory is qemu's.
            return [init_pid], []
        group = payload_cgroup(init_pid)
        pids = sorted(set(cgroup_pids(group))) if group else [init_pid]
        monitor = parent_of(init_pid)
        # The parent is `[lxc monitor]` (a forked incusd), there only for this instance.
        if monitor and " ".join(process_cmdline(monitor)).startswith("[lxc monitor]"):
            return pids, [monitor]
        return pids, []

    def cleanup(self) -> None:
        if not self.requested:
            return
        # By name, not by handle: a request cut short by Ctrl-C or SIGTERM may still be
        # running in the daemon, and the instance then appears (or starts) after we gave up.
        try:
            delete_instance(self.instance or _Named(self.client, self.instance_name),
                            appearing=self.instance is None)
        finally:
            self.instance = None
            self.requested = False


class _Named:
    """An instance known only by its name: its create request may not have finished."""

    def __init__(self, client: Any, name: str):
        self.client, self.name = client, name


def exec_status(client: Any, name: str, argv: list[str]) -> int | None:
    """Run ``argv`` in the instance and return its exit code, without websockets.

    pylxd's ``execute`` attaches websockets for the output, and those check the server's
    certificate against the URL's host name, which a remote Incus's own certificate
    seldom lists (only the pin is checked on the REST calls, as ``incus remote add``
    does). Nothing here needs the output: the exec operation's result has the exit code.
    """
    started = client.api.instances[name].exec.post(json={
        "command": argv, "wait-for-websocket": False, "interactive": False,
        "record-output": False})
    operation = started.json()["operation"].rsplit("/", 1)[-1]
    done = client.api.operations[operation].wait.get(params={"timeout": 30}).json()
    metadata = done.get("metadata") or {}
    if metadata.get("status") != "Success":
        raise SubjectError(metadata.get("err") or f"exec {argv[0]}: {metadata.get('status')}")
    return (metadata.get("metadata") or {}).get("return")


def delete_instance(instance: Any, *, within: float = 60.0, appearing: bool = False) -> None:
    """Force-stop and delete ``instance``; 'gone' is success, and never waits for ever.

    Each attempt fetches the instance afresh by name: a handle's status can be stale
    (pylxd keeps one it set itself, e.g. "Running" for a container that stopped by
    itself), and the daemon refuses to stop or delete an instance while one of its
    operations (a create or start a signal cut short on our side) still runs, so that is
    waited out first. Attempts repeat until ``within`` seconds have passed, then the
    daemon's last refusal is raised. A signal meanwhile is raised once the instance is
    gone. With ``appearing``, a create request may still be on its way: 'not there' is
    believed only after 15 s without the instance or an operation on it.
    """
    from pylxd.exceptions import LXDAPIException

    client, name = instance.client, instance.name
    deadline = time.monotonic() + within
    absent_until = time.monotonic() + (15.0 if appearing else 0.0)
    interrupted: BaseException | None = None
    while True:
        try:
            if _deleted(client, name, deadline, absent_until):
                break
            time.sleep(0.2)
        except (KeyboardInterrupt, Terminated) as exc:
            # A signal cut our stop or delete request short; the daemon goes on with
            # it, but only we can see the deletion through: finish, then pass it on.
            interrupted = interrupted or exc
            if time.monotonic() >= deadline:
                break
        except LXDAPIException:
            if time.monotonic() >= deadline:
                raise
    if interrupted is not None:
        raise interrupted


def _deleted(client: Any, name: str, deadline: float, absent_until: float) -> bool:
    """One attempt: True once the instance is gone (or ours to believe gone)."""
    from pylxd.exceptions import NotFound

    try:
        _wait_for_operations(client, name, deadline)
        fresh = client.instances.get(name)
        if fresh.status != "Stopped":
            fresh.stop(force=True, wait=True)
        fresh.delete(wait=True)
        return True
    except NotFound:
        if time.monotonic() >= deadline:
            return True  # an operation on a name that never became an instance
        return time.monotonic() >= absent_until and not operations_on(client).get(name)


def operations_on(client: Any) -> dict[str, list[dict[str, Any]]]:
    """The daemon's running operations (create, start, stop, …) by instance name."""
    running = client.api.operations.get(params={"recursion": 1}).json()["metadata"] or {}
    found: dict[str, list[dict[str, Any]]] = {}
    for operation in running.get("running") or []:
        for url in (operation.get("resources") or {}).get("instances") or []:
            found.setdefault(url.split("?")[0].rsplit("/", 1)[-1], []).append(operation)
    return found


def _wait_for_operations(client: Any, name: str, deadline: float) -> None:
    """Wait out the instance's running tasks (create, start, stop): the daemon refuses
    to stop or delete it meanwhile. An exec (a websocket operation) does not hold it up,
    and may wait for a client that is gone: a forced stop ends it."""
    from pylxd.exceptions import LXDAPIException

    def tasks() -> list[dict[str, Any]]:
        return [op for op in operations_on(client).get(name, []) if op.get("class") == "task"]

    while (running := tasks()) and time.monotonic() < deadline:
        for operation in running:
            wait = max(1, int(deadline - time.monotonic()))
            try:  # its failure is not ours to report: only that it ended
                client.api.operations[operation["id"]].wait.get(params={"timeout": wait})
            except LXDAPIException:
                pass


def delete_leftovers(client: Any, prefix: str = "chronicle-") -> list[str]:
    """Delete every instance whose name starts with ``prefix``; the names deleted."""
    gone = []
    for instance in client.instances.all():
        if instance.name.startswith(prefix):
            delete_instance(instance)
            gone.append(instance.name)
    return gone


def sweep_experiment(experiment: str) -> list[str]:
    """Delete the instances a run of ``experiment`` left behind; the names deleted.

    A script that dies by SIGKILL (the runner's last resort after a timeout) cannot run
    its own clean-up. The runner holds the experiment's lock, so every instance named by
    ``unique_name(experiment)`` belongs to the run that just ended.
    """
    from pylxd.exceptions import LXDAPIException

    if not host.incus_socket().exists():
        return []
    try:
        client = host.incus_client(timeout=10)
        names = [i.name for i in client.instances.all() if made_by(i.name, experiment)]
    except (LabError, LXDAPIException):
        return []
    for name in names:
        delete_instance(_Named(client, name))
    return names
