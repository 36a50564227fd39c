"""Boot a built guest once, as an Incus container or as a qemu microVM (or any qemu
command line: ``running_qemu``, for ``guestvm``'s UEFI machine), until its app answers —
what ``chronicle lab guest try`` does to show a build works.

Both ways the app is reached on 127.0.0.1 only: the container through a proxy device
(``listen=tcp:127.0.0.1:PORT`` → the app's port on the container's own loopback), the
microVM through qemu's ``hostfwd=tcp:127.0.0.1:PORT-:APP_PORT``. "Up" means the
definition's URL answered with status 200; t0 is the create request or the spawn.
Everything started here is gone when the call returns, by error, timeout or Ctrl-C:
the instance is force-deleted, qemu's process group killed, and the disk was never
written (qemu's ``snapshot=on`` keeps the writes in a temporary file of its own).
"""

from __future__ import annotations

import contextlib
import http.client
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from chronicle.errors import LabError
from chronicle.lab.guestbuild import GuestBuild
from chronicle.lab.guestdef import GuestDefinition
from chronicle.lab.probes import LOOPBACK, free_port

QEMU = "qemu-system-x86_64"
MEMORY_MIB = 512


@dataclass(frozen=True)
class Booted:
    """A guest whose app has answered: after how long, and on which loopback port."""

    seconds: float
    port: int


def url_answers(port: int, path: str, timeout: float = 1.0) -> bool:
    """One attempt: does ``GET path`` on 127.0.0.1:port answer 200?"""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": "localhost"})
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def wait_for_url(port: int, path: str, deadline: float, alive=lambda: True) -> float:
    """Poll until the URL answers 200; the monotonic time it did. TimeoutError at
    ``deadline``, LabError as soon as ``alive()`` says the guest has gone."""
    while True:
        if url_answers(port, path, timeout=max(0.1, min(1.0, deadline - time.monotonic()))):
            return time.monotonic()
        if not alive():
            raise LabError("the guest stopped before its app answered")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"GET {path} on {LOOPBACK}:{port} never answered 200")
        time.sleep(0.05)


def container_config(name: str, build: GuestBuild, app_port: int, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "container",
        "source": {"type": "image", "alias": build.alias},
        "profiles": ["default"],
        "devices": {"app": {"type": "proxy", "listen": f"tcp:{LOOPBACK}:{port}",
                            "connect": f"tcp:127.0.0.1:{app_port}"}},
    }


@contextlib.contextmanager
def running_container(client: Any, definition: GuestDefinition, build: GuestBuild,
                      timeout: float) -> Iterator[Booted]:
    """The guest as a container whose app has answered; deleted when the block ends."""
    from pylxd.exceptions import NotFound

    from chronicle.lab.subjects.base import unique_name
    from chronicle.lab.subjects.incus import delete_instance

    name = unique_name(f"guest-{definition.name}")
    port = free_port()
    t0 = time.monotonic()
    try:
        instance = client.instances.create(
            container_config(name, build, definition.app.port, port), wait=True)
        instance.start(wait=True)
        try:
            answered = wait_for_url(port, definition.app.url, t0 + timeout)
        except TimeoutError as exc:
            raise LabError(f"{definition.name} as a container: {exc}",
                           definition.path) from None
        yield Booted(answered - t0, port)
    finally:
        with contextlib.suppress(NotFound):
            delete_instance(client.instances.get(name))


def microvm_command(definition: GuestDefinition, build: GuestBuild, port: int,
                    accel: str, tsc_khz: int | None) -> list[str]:
    cmdline = "console=ttyS0 root=/dev/vda rw quiet reboot=t panic=-1"
    if accel == "tcg" and tsc_khz:
        cmdline += f" tsc_early_khz={tsc_khz}"  # the emulated TSC is never calibrated
    cpu = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg", "-cpu", "max"]
    return [
        QEMU, "-M", "microvm,acpi=on", *cpu, "-m", str(MEMORY_MIB), "-smp", "1",
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
        "-kernel", str(build.kernel), "-initrd", str(build.initrd), "-append", cmdline,
        "-drive", f"id=root,file={build.disk},format=raw,if=none,snapshot=on",
        "-device", "virtio-blk-device,drive=root",
        # Forward from 127.0.0.1 only: nothing outside this host reaches the guest.
        "-netdev", f"user,id=net0,hostfwd=tcp:{LOOPBACK}:{port}-:{definition.app.port}",
        "-device", "virtio-net-device,netdev=net0",
    ]


@contextlib.contextmanager
def running_microvm(definition: GuestDefinition, build: GuestBuild,
                    timeout: float) -> Iterator[Booted]:
    """The guest as a qemu microVM whose app has answered; its process group killed
    when the block ends."""
    from chronicle.lab import host
    from chronicle.lab.subjects.qemu import choose_accel

    port = free_port()
    argv = microvm_command(definition, build, port, choose_accel(host.kvm_kind()),
                           host.tsc_khz())
    with running_qemu(definition, argv, port, timeout, "a microVM") as booted:
        yield booted


@contextlib.contextmanager
def running_qemu(definition: GuestDefinition, argv: list[str], port: int, timeout: float,
                 way: str) -> Iterator[Booted]:
    """qemu started from ``argv`` (the guest's app forwarded to 127.0.0.1:``port``), once
    its app has answered; its process group killed when the block ends. ``way`` names
    the machine in errors ("a microVM")."""
    from chronicle.lab.procgroup import kill_group

    # Its own session, so Ctrl-C reaches us and not qemu; then nothing would end it if
    # we were SIGKILLed, so the kernel is asked to (setpriv --pdeathsig).
    setpriv = shutil.which("setpriv")
    if setpriv:
        argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
    with tempfile.TemporaryFile() as console:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            try:
                answered = wait_for_url(port, definition.app.url, t0 + timeout,
                                        alive=lambda: proc.poll() is None)
            except (LabError, TimeoutError) as exc:
                console.seek(0)
                tail = console.read().decode(errors="replace").strip().splitlines()[-8:]
                raise LabError(f"{definition.name} as {way}: {exc}; console: "
                               + " | ".join(tail), definition.path) from None
            yield Booted(answered - t0, port)
        finally:
            kill_group(proc, grace=2.0)
