"""A built guest (``chronicle lab guest build``) as a subject: qemu microVM (spawned
directly, or the microvm.nix way through a ``microvm-run`` runner script that execs the
same command line), Incus container or, where the host can run one, Incus VM (see
``GuestVm``), timed to the app's first served request, phase by phase.

``app_ms`` is the host's wall clock from spawn (VM) or create request (container) to the
first 200 for the definition's URL on 127.0.0.1 — the same probe both ways, through
``hostfwd`` or a proxy device. The guest's own systemd says when init started and when
the app's unit became active (``chronicle-phases.service``, see
``chronicle.lab.guestbuild``); from those:

- microVM: ``kernel_to_init_ms`` (the guest's monotonic clock starts with its kernel),
  ``init_to_app_ms``, and ``outside_ms`` = ``app_ms`` − both: qemu's start (after the
  runner's shell, for ``microvm-run``) and firmware before the kernel, plus everything
  after the unit is active until the first 200.
- container: ``create_to_init_ms`` (the container shares the host's monotonic clock, so
  this is exact: Incus's create and start up to systemd's start), ``init_to_app_ms``,
  and ``outside_ms`` = after the unit is active until the first 200.

"After the unit is active" is not only the request's way in: a ``Type=simple`` unit
(puma) is active once exec'd, so the app's own start (Rails loading) falls there too;
nginx (``Type=forking``) is active only once it listens.

So the phases add up to ``app_ms`` by construction; what a test checks is that none is
negative, i.e. that the two clocks agree.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chronicle.errors import LabError
from chronicle.lab.guestboot import MEMORY_MIB, microvm_command, url_answers
from chronicle.lab.guestbuild import GuestBuild, current_build
from chronicle.lab.guestdef import GuestDefinition
from chronicle.lab.probes import free_port
from chronicle.lab.subjects.base import BootTimeout, Subject, SubjectError, Timings, Unsupported
from chronicle.lab.subjects.incus import IncusInstance
from chronicle.lab.subjects.lineup import Offer
from chronicle.lab.subjects.qemu import QemuMicrovm, choose_accel
from chronicle.lab.subjects.runner import MicrovmRunner, write_runner
from chronicle.lab.subjects.vmm import VmmProcess, boot_marker

_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PHASES = boot_marker(re.compile(rb"CHRONICLE-PHASES init_us=(\d+) app_us=(\d+)"))
VM_PHASES = re.compile(PHASES.pattern.decode())
PHASES_GRACE_S = 10.0
WAYS = ("qemu-microvm", "microvm-run", "incus-container", "incus-vm")
UEFI = "qemu-uefi"


def guest_facts(definition: GuestDefinition, build: GuestBuild) -> dict[str, Any]:
    """What a result's provenance says about the guest: its key and the versions of the
    packages it asked for, of systemd and of its kernel (all of them are in its
    manifest, ``chronicle lab guest build`` prints where)."""
    wanted = [*definition.packages, "systemd"]
    versions = {p: build.packages[p] for p in wanted if p in build.packages}
    return {
        "guest": definition.name,
        "guest_key": build.key,
        "guest_kernel": build.kernel_version,
        "guest_packages": ", ".join(f"{p} {v}" for p, v in versions.items()),
        "guest_package_count": len(build.packages),
    }


class GuestMicrovm(VmmProcess):
    name = "qemu-microvm"
    marker = PHASES

    def __init__(self, definition: GuestDefinition, build: GuestBuild, accel: str,
                 tsc_khz: int | None):
        self.definition = definition
        self.build = build
        self.accel = accel
        port = free_port()
        super().__init__(microvm_command(definition, build, port, accel, tsc_khz),
                         disk_files=[build.kernel, build.initrd, build.disk], http_port=port)

    def facts(self) -> dict[str, Any]:
        from chronicle.lab import host

        return {"accelerator": self.accel, "kvm_kind": host.kvm_kind(), "vmm": "qemu",
                "qemu_version": host.qemu_version(), "machine": "microvm",
                "root": "ext4 on virtio-blk", **guest_facts(self.definition, self.build)}

    def wait_booted(self, timeout: float) -> Timings:
        return _microvm_phases(self, timeout)


class GuestRunner(MicrovmRunner):
    """The guest the microvm.nix way: a generated ``microvm-run`` script (the shape of
    microvm.nix's ``declaredRunner``) that execs the very qemu command line of
    ``GuestMicrovm``, so the two differ only by the runner's shell in front."""

    marker = PHASES

    def __init__(self, definition: GuestDefinition, build: GuestBuild, accel: str,
                 tsc_khz: int | None):
        self.definition = definition
        self.build = build
        port = free_port()
        self.package = Path(tempfile.mkdtemp(prefix=f"microvm-run-{definition.name}-"))
        write_runner(self.package / "bin" / "microvm-run",
                     microvm_command(definition, build, port, accel, tsc_khz))
        super().__init__(self.package, disk_files=[build.kernel, build.initrd, build.disk],
                         http_port=port)

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), "machine": "microvm", "root": "ext4 on virtio-blk",
                **guest_facts(self.definition, self.build)}

    def wait_booted(self, timeout: float) -> Timings:
        timings = _microvm_phases(self, timeout)
        self.vmm_pid()  # while it runs: the facts name the hypervisor measured
        return timings

    def cleanup(self) -> None:
        try:
            super().cleanup()
        finally:
            shutil.rmtree(self.package, ignore_errors=True)


class GuestUefiVm(GuestMicrovm):
    """The guest's Incus VM image (``chronicle.lab.guestvm``) booted by qemu itself, on
    the machine Incus builds for a VM: q35, OVMF, the disk on virtio-scsi, systemd-boot.
    Not an Incus VM — no daemon, no agent — and never reported as one: what a full VM
    costs against the microVM, measured where Incus cannot start VMs. Its phases are
    the microVM's; ``outside_ms`` then also holds the firmware and the boot loader."""

    name = "qemu-uefi"

    def __init__(self, definition: GuestDefinition, build: GuestBuild, accel: str,
                 tsc_khz: int | None):
        from chronicle.lab import guestvm

        self.definition = definition
        self.build = build
        self.accel = accel
        made = guestvm.read_disk(build)
        assert made is not None, "guestvm.derive() first"
        code, template = guestvm.firmware()
        self.firmware = code
        self.scratch = Path(tempfile.mkdtemp(prefix=f"chronicle-{definition.name}-ovmf-"))
        variables = self.scratch / template.name
        shutil.copyfile(template, variables)  # the firmware writes its variables
        port = free_port()
        VmmProcess.__init__(self, guestvm.uefi_command(definition, made, variables, port,
                                                       accel),
                            disk_files=[made.disk], http_port=port)

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), "machine": "q35, UEFI (OVMF), systemd-boot",
                "firmware": str(self.firmware),
                "root": "ext4 on virtio-scsi (the Incus VM image's GPT disk)"}

    def cleanup(self) -> None:
        try:
            super().cleanup()
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)


def _microvm_phases(vm: GuestMicrovm | GuestRunner, timeout: float) -> Timings:
    """Wait for the guest's phases line and its app's first 200, whichever comes first."""
    assert vm.proc is not None and vm.watch is not None, "start() first"
    deadline = vm.t0 + timeout
    url, port = vm.definition.app.url, vm.http_port or 0
    seen, answered = None, None
    while seen is None or answered is None:
        vm._pump_or_fail(deadline, f"report its phases and answer GET {url} with 200")
        seen = seen or vm.watch.find("serial", vm.marker)
        if answered is None and url_answers(port, url, timeout=0.2):
            answered = time.monotonic()
    app_ms = (answered - vm.t0) * 1000.0
    init_ms, active_ms = (int(g) / 1000.0 for g in seen.match.groups())
    return Timings(
        boot_ms=(seen.at - vm.t0) * 1000.0, guest_uptime_ms=active_ms, http_ms=app_ms,
        phases={"app_ms": app_ms, "kernel_to_init_ms": init_ms,
                "init_to_app_ms": active_ms - init_ms, "outside_ms": app_ms - active_ms},
    )


class GuestInstance(IncusInstance):
    """What a guest's container and VM share: waiting for the app's first 200, and
    saying why an instance stopped before it came."""

    definition: GuestDefinition

    def _wait_for_app(self, deadline: float) -> float:
        """The monotonic time the definition's URL first answered 200."""
        url, port = self.definition.app.url, self.http_port or 0
        checked = time.monotonic()
        while not url_answers(port, url, timeout=0.2):
            now = time.monotonic()
            if now >= deadline:
                raise BootTimeout(f"{self.name}: GET {url} on 127.0.0.1:{port} never "
                                  f"answered 200 for {self.instance_name}")
            if now - checked >= 1.0:  # a guest that halted would otherwise wait it all out
                checked = now
                if why := self.stopped():
                    raise SubjectError(f"{self.name}: {why} before GET {url} answered 200")
            time.sleep(0.02)
        return time.monotonic()

    def console_text(self) -> str:
        """The instance's console log so far, without terminal codes ('' if unreadable)."""
        try:
            log = self.client.api.instances[self.instance_name].console.get().text
        except Exception:  # pylxd's API errors, or the instance going away meanwhile
            return ""
        return _TERMINAL_CODES.sub("", log)  # systemd colours its console: keep the words

    def stopped(self) -> str:
        """Why the instance is no longer running, with the last lines of its console
        (where a failing systemd says why); '' while it runs."""
        status = self.instance.state().status  # the daemon's word: a handle's can be stale
        if status == "Running":
            return ""
        log = self.console_text()
        tail = " | ".join(line.strip() for line in log.strip().splitlines()[-3:] if line.strip())
        return f"{self.instance_name} is {status}" + (f": {tail}" if tail else "")


class GuestContainer(GuestInstance):
    def __init__(self, client: Any, definition: GuestDefinition, build: GuestBuild, *,
                 experiment: str):
        super().__init__(client, experiment=experiment, alias=build.alias,
                         http_port=free_port(), app_port=definition.app.port)
        self.definition = definition
        self.build = build

    def facts(self) -> dict[str, Any]:
        return {**super().facts(), **guest_facts(self.definition, self.build)}

    def wait_booted(self, timeout: float) -> Timings:
        assert self.instance is not None and self.running_at is not None, "start() first"
        answered = self._wait_for_app(self.t0 + timeout)
        init_us = self._systemd_show("UserspaceTimestampMonotonic")
        active_us = self._systemd_show("ActiveEnterTimestampMonotonic",
                                       self.definition.app.service)
        app_ms = (answered - self.t0) * 1000.0
        t0_ms = self.t0 * 1000.0  # time.monotonic() is CLOCK_MONOTONIC, as systemd's
        return Timings(
            boot_ms=app_ms, running_ms=(self.running_at - self.t0) * 1000.0, http_ms=app_ms,
            phases={"app_ms": app_ms, "create_to_init_ms": init_us / 1000.0 - t0_ms,
                    "init_to_app_ms": (active_us - init_us) / 1000.0,
                    "outside_ms": app_ms - (active_us / 1000.0 - t0_ms)},
        )

    def _systemd_show(self, prop: str, unit: str | None = None) -> int:
        argv = ["systemctl", "show", "-P", prop, *([unit] if unit else [])]
        result = self.instance.execute(argv)
        try:
            return int(result.stdout.strip())
        except ValueError:
            raise SubjectError(f"{self.name}: `{' '.join(argv)}` in {self.instance_name} "
                               f"said {result.stdout.strip()!r} {result.stderr.strip()!r}"
                               ) from None


class GuestVm(GuestInstance):
    """The guest as an Incus VM: the same tree on a UEFI disk (``chronicle.lab.guestvm``)
    under the machine Incus builds (q35, OVMF), with the microVM's memory and CPU count.
    The app is reached through qemu's ``hostfwd`` on 127.0.0.1 (``instance_config``).

    Phases come from the console log, where ``chronicle-phases.service`` writes the
    guest's own clock as in the microVM: ``kernel_to_init_ms``, ``init_to_app_ms`` and
    ``outside_ms`` (Incus's create and start, qemu, the firmware and the boot loader,
    and what follows the unit's activation). A console log that never shows the line
    leaves ``app_ms`` alone, and the facts say so.
    """

    def __init__(self, client: Any, definition: GuestDefinition, build: GuestBuild,
                 alias: str, *, experiment: str):
        super().__init__(client, experiment=experiment, kind="virtual-machine", alias=alias,
                         http_port=free_port(), app_port=definition.app.port,
                         limits={"limits.memory": f"{MEMORY_MIB}MiB", "limits.cpu": "1"})
        self.definition = definition
        self.build = build
        self.phases_seen: bool | None = None

    def facts(self) -> dict[str, Any]:
        facts = {**super().facts(), "machine": "q35, UEFI (OVMF), systemd-boot",
                 "root": "ext4 on Incus's root disk", **guest_facts(self.definition, self.build)}
        if self.phases_seen is False:
            facts["phases"] = "not in the console log: app_ms only"
        return facts

    def wait_booted(self, timeout: float) -> Timings:
        assert self.instance is not None and self.running_at is not None, "start() first"
        deadline = self.t0 + timeout
        answered = self._wait_for_app(deadline)
        app_ms = (answered - self.t0) * 1000.0
        timings = Timings(boot_ms=app_ms, running_ms=(self.running_at - self.t0) * 1000.0,
                          http_ms=app_ms, phases={"app_ms": app_ms})
        # The line follows the unit's activation, so it may come just after the first 200.
        wait_until = min(deadline, time.monotonic() + PHASES_GRACE_S)
        while (found := VM_PHASES.search(self.console_text())) is None:
            if time.monotonic() >= wait_until:
                self.phases_seen = False
                return timings
            time.sleep(0.2)
        self.phases_seen = True
        init_ms, active_ms = (int(g) / 1000.0 for g in found.groups())
        timings.phases.update({"kernel_to_init_ms": init_ms,
                               "init_to_app_ms": active_ms - init_ms,
                               "outside_ms": app_ms - active_ms})
        return timings


def guest_subjects(experiment: str, root: Path, lab: Path, name: str, *,
                   uefi: bool = False
                   ) -> tuple[dict[str, Callable[[], Subject]], dict[str, str]]:
    """Factories for guest ``name`` as a qemu microVM, the same through a microvm.nix
    runner, an Incus container and an Incus VM, and with ``uefi`` its VM image under
    qemu (``GuestUefiVm``); and a reason for each way this host cannot boot it. The VM
    images are derived from the build here, before any timing."""
    from chronicle.lab import guestdef, host

    definition = guestdef.find(root, name)
    ways = (*WAYS, UEFI) if uefi else WAYS
    remote = host.incus_remote()
    if remote is not None:
        reason = (f"a guest's image is built and its app probed on this machine, not "
                  f"through {remote.host}'s Incus API: use `chronicle lab run --on "
                  f"{remote.host}` to measure it on {remote.host}")
        return {}, dict.fromkeys(ways, reason)
    try:
        if not host.incus_socket().exists():
            raise Unsupported("Incus is not running (run `chronicle lab setup`)")
        client = host.incus_client()
        build = current_build(lab, definition, client)
        if build is None:
            raise LabError(f"guest {name} is not built from its current definition: run "
                           f"`chronicle lab guest build {name}`", definition.path)
    except Unsupported as exc:
        return {}, dict.fromkeys(ways, exc.reason)
    offers = _qemu_offers(definition, build, uefi)
    offers["incus-container"] = lambda: GuestContainer(client, definition, build,
                                                       experiment=experiment)
    offers["incus-vm"] = _incus_vm_offer(client, definition, build, experiment)
    return ({way: o for way, o in offers.items() if not isinstance(o, str)},
            {way: o for way, o in offers.items() if isinstance(o, str)})


def _qemu_offers(definition: GuestDefinition, build: GuestBuild, uefi: bool) -> Offer:
    """The microVM, the same through its runner and, with ``uefi``, the VM image under
    qemu; or why not."""
    from chronicle.lab import guestvm, host

    names = ("qemu-microvm", "microvm-run", *([UEFI] if uefi else []))
    try:
        QemuMicrovm.check()
    except Unsupported as exc:
        return dict.fromkeys(names, exc.reason)
    accel, tsc = choose_accel(host.kvm_kind()), host.tsc_khz()
    offers: Offer = {
        "qemu-microvm": lambda: GuestMicrovm(definition, build, accel, tsc),
        "microvm-run": lambda: GuestRunner(definition, build, accel, tsc),
    }
    if uefi:
        try:
            guestvm.firmware()
        except LabError as exc:  # a part that is not set up: a reason, not a crash
            offers[UEFI] = exc.message
        else:
            guestvm.derive(definition, build)
            offers[UEFI] = lambda: GuestUefiVm(definition, build, accel, tsc)
    return offers


def _incus_vm_offer(client: Any, definition: GuestDefinition, build: GuestBuild,
                    experiment: str) -> Callable[[], Subject] | str:
    """The guest as an Incus VM, its image imported first; or why this host cannot."""
    from chronicle.lab import guestvm

    try:
        IncusInstance.check(client, "virtual-machine")
    except Unsupported as exc:
        return exc.reason
    alias = guestvm.ensure_image(client, definition, build).alias
    return lambda: GuestVm(client, definition, build, alias, experiment=experiment)
