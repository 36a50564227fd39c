"""The subjects an experiment can boot on this host, and one repetition of each.

``lineup()`` decides, once per run, which subjects this host can run and why not for
the others (``Unsupported`` reasons go into the result, never a number). ``boot_once()``
is one repetition: open the subject, wait for the boot, optionally let it settle and
measure it — and always clean up, whatever happens. ``boots()`` is the loop every boot
experiment runs: the plan's interleaved schedule, one ``boot_once()`` per step, each
subject's facts reported on its first boot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chronicle.errors import LabError
from chronicle.lab.probes import free_port
from chronicle.lab.subjects.base import Footprint, Subject, Timings, Unsupported

if TYPE_CHECKING:
    from chronicle.lab import Plan

# The order subjects are listed in results; `schedule()` interleaves them anyway.
ORDER = ("qemu-microvm", "microvm-run", "firecracker", "cloud-hypervisor",
         "incus-container", "incus-vm")


@dataclass(frozen=True)
class Lineup:
    """What can run here: a factory per subject name, and a reason for every other one."""

    factories: dict[str, Callable[[], Subject]] = field(default_factory=dict)
    unsupported: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """In ``ORDER`` of their way (a name is ``way`` or ``way/guest``), then by name."""

        def rank(name: str) -> tuple[int, str]:
            way = name.split("/")[0]
            return (ORDER.index(way) if way in ORDER else len(ORDER), name)

        return sorted(self.factories, key=rank)


@dataclass(frozen=True)
class Boot:
    """One repetition's measurements."""

    timings: Timings
    footprint: Footprint | None
    facts: dict[str, Any]


Offer = dict[str, "Callable[[], Subject] | str"]  # a factory, or why not


def lineup(experiment: str, scratch: Path, *, http: bool = False,
           lab: Path | None = None) -> Lineup:
    """Every subject, each either with a factory or with the reason it cannot run.

    In a run through a remote Incus API (``lab run --incus HOST``) only the Incus
    subjects are HOST's; the others would boot on this machine, so they are left out.
    """
    from chronicle.lab import host

    remote = host.incus_remote()
    offers: dict[str, Callable[[], Subject] | str] = {}
    families = (
        (("qemu-microvm", "microvm-run"), _microvms),
        (("firecracker",), _firecracker),
        (("cloud-hypervisor",), _cloud_hypervisor),
        (("incus-container", "incus-vm"), _incus),
    )
    for names, offer in families:
        if remote is not None and offer is not _incus:
            offers.update(dict.fromkeys(names, not_through_api(remote.host)))
            continue
        try:
            offers.update(offer(experiment=experiment, scratch=scratch, http=http, lab=lab))
        except Unsupported as exc:
            offers.update(dict.fromkeys(names, exc.reason))
        except LabError as exc:  # a part that is not set up: a reason, not a crash
            offers.update(dict.fromkeys(names, exc.message))
    return Lineup(
        factories={n: f for n, f in offers.items() if not isinstance(f, str)},
        unsupported={n: f for n, f in offers.items() if isinstance(f, str)},
    )


def boot_once(make: Callable[[], Subject], timeout: float, *,
              measure: bool = False, settle: float = 0.0) -> Boot:
    """Open a subject, time its boot, optionally measure it idle; always clean up."""
    with make() as subject:
        timings = subject.wait_booted(timeout)
        footprint = None
        if measure:
            time.sleep(settle)  # let the guest go idle: footprint "idle after boot"
            footprint = subject.measure()
        return Boot(timings, footprint, subject.facts())


def boots(subjects: Lineup, plan: Plan, *, measure: bool = False, settle: float = 0.0,
          timeout: float = 90.0) -> Iterator[tuple[int, str, bool, Boot]]:
    """``(run, subject, warmup, boot)`` for every step of the plan's schedule, in order.

    The boot timeout is the experiment's ``boot_timeout_s`` parameter, else ``timeout``.
    """
    from chronicle import lab

    timeout = float(plan.params.get("boot_timeout_s", timeout))
    reported: set[str] = set()
    for run, name, warmup in lab.schedule(subjects.names, plan.repeat, plan.warmup, plan.seed):
        boot = boot_once(subjects.factories[name], timeout, measure=measure, settle=settle)
        if name not in reported:
            lab.report_subject(name, **boot.facts)
            reported.add(name)
        yield run, name, warmup, boot


def emit_boot(name: str, run: int, warmup: bool, boot: Boot) -> None:
    """A real guest's boot as metrics: its phases in ms, its idle footprint in MiB."""
    from chronicle import lab

    for metric, value in boot.timings.phases.items():
        lab.emit(name, metric, value, "ms", run, warmup=warmup)
    assert boot.footprint is not None, "boots(..., measure=True)"
    for metric, value in boot.footprint.metrics().items():
        lab.emit(name, metric, value, "MiB", run, warmup=warmup)


# -- one adder per family: raise Unsupported, or add factories -------------------------


def _guest(lab: Path | None):  # -> GuestAssets
    from chronicle.lab.guest import guest_assets
    from chronicle.paths import lab_dir

    try:
        return guest_assets(lab or lab_dir())
    except LabError as exc:
        raise Unsupported(f"no guest kernel/initramfs: {exc.message}") from exc


def _microvms(*, experiment: str, scratch: Path, http: bool, lab: Path | None) -> Offer:
    from chronicle.lab.subjects.qemu import QemuMicrovm, host_config, qemu_command
    from chronicle.lab.subjects.runner import MicrovmRunner, write_runner

    QemuMicrovm.check()
    assets = _guest(lab)
    kernel, initrd = assets.kernel.resolve(), assets.initrd.resolve()
    mode = "http" if http else "marker"

    def qemu() -> Subject:
        port = free_port() if http else None
        return QemuMicrovm(host_config(kernel, initrd, mode=mode, http_port=port))

    def runner() -> Subject:
        port = free_port() if http else None
        config = host_config(kernel, initrd, mode=mode, http_port=port)
        package = scratch / f"microvm-run-{port or 'marker'}"
        write_runner(package / "bin" / "microvm-run", qemu_command(config))
        return MicrovmRunner(package, disk_files=[kernel, initrd], http_port=port)

    return {"qemu-microvm": qemu, "microvm-run": runner}


def _firecracker(*, experiment: str, scratch: Path, http: bool, lab: Path | None) -> Offer:
    from chronicle.lab.subjects.firecracker import Firecracker

    Firecracker.check(http=http)
    assets = _guest(lab)
    return {"firecracker": lambda: Firecracker(
        assets.kernel.resolve(), assets.initrd.resolve(), scratch / "firecracker",
        cmdline="chronicle.mode=marker chronicle.idle=1")}


def _cloud_hypervisor(*, experiment: str, scratch: Path, http: bool,
                      lab: Path | None) -> Offer:
    from chronicle.lab.subjects.cloud_hypervisor import CloudHypervisor

    CloudHypervisor.check(http=http)
    assets = _guest(lab)
    return {"cloud-hypervisor": lambda: CloudHypervisor(
        assets.kernel.resolve(), assets.initrd.resolve(),
        cmdline="chronicle.mode=marker chronicle.idle=1")}


def _incus(*, experiment: str, scratch: Path, http: bool, lab: Path | None) -> Offer:
    from chronicle.lab import host
    from chronicle.lab.subjects.incus import BUSYBOX_ALIAS, IncusInstance

    remote = host.incus_remote()
    if remote is None and not host.incus_socket().exists():
        raise Unsupported("Incus is not running (run `chronicle lab setup`)")
    if remote is not None and http:
        raise Unsupported(f"HTTP is probed on this machine's 127.0.0.1, but the proxy of an "
                          f"instance made through {remote.host}'s Incus API listens on "
                          f"{remote.host}'s: use `chronicle lab run --on {remote.host}`")
    client = host.incus_client()
    try:
        client.images.get_by_alias(BUSYBOX_ALIAS)
    except Exception as exc:  # pylxd's NotFound, or the daemon going away
        raise Unsupported(f"image {BUSYBOX_ALIAS} missing (run `chronicle lab setup`)") from exc

    def make(kind: str) -> Callable[[], Subject]:
        def open_instance() -> Subject:
            port = free_port() if http else None
            return IncusInstance(client, experiment=experiment, kind=kind, http_port=port,
                                 remote=remote)
        return open_instance

    offer: Offer = {"incus-container": make("container")}
    try:
        IncusInstance.check(client, "virtual-machine")
        offer["incus-vm"] = make("virtual-machine")
    except Unsupported as exc:
        offer["incus-vm"] = exc.reason
    return offer


def not_through_api(name: str) -> str:
    """Why a subject that boots on this machine is left out of a run through ``name``'s
    Incus API: its numbers would be this machine's, labelled as ``name``'s."""
    return (f"boots on this machine, not through {name}'s Incus API: use "
            f"`chronicle lab run --on {name}` to measure it on {name}")


def report_lineup(subjects: Lineup) -> None:
    """Record every subject this host cannot run, with its reason; refuse an empty run."""
    from chronicle import lab

    for name, reason in subjects.unsupported.items():
        lab.report_subject(name, status="unsupported", reason=reason)
    if not subjects.factories:
        raise SystemExit("no subject can run on this host: " + "; ".join(
            f"{n}: {r}" for n, r in subjects.unsupported.items()))
