"""``chronicle lab guest list | build NAME | try NAME``: the guests of ``experiments/guests``.

``build`` makes the root filesystem once and derives from it the Incus image, the
microVM disk (see ``chronicle.lab.guestbuild``) and the Incus VM image (a UEFI disk, see
``chronicle.lab.guestvm``); an unchanged definition is skipped. ``try`` boots the build
once each way and prints how long each took to answer: as a container, as a microVM,
and as a UEFI VM — the VM image's disk under qemu as Incus would run it, which shows
the image boots on a host where Incus cannot start VMs.
"""

from __future__ import annotations

import argparse
import sys

from chronicle.errors import LabError
from chronicle.lab import guestboot, guestbuild, guestdef, guestvm
from chronicle.paths import lab_dir, site_command, site_root

WAYS = ("container", "microvm", "uefi-vm")


def register(lab_sub: argparse._SubParsersAction) -> None:
    guest = lab_sub.add_parser("guest", help="define, build and try Debian guests")
    sub = guest.add_subparsers(dest="guest_command", required=True, metavar="GUEST_COMMAND")

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        return site_command(sub, name, func, help)

    command("list", cmd_list, "guest definitions and whether their build is current")
    p = command("build", cmd_build, "build a guest's Incus images (container, VM) and "
                "microVM disk (root)")
    p.add_argument("name", metavar="NAME")
    p = command("try", cmd_try, "boot a built guest once each way until its app answers")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--as", dest="ways", action="append", choices=WAYS,
                   help="only this way (default: each)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="seconds each boot may take to answer (default 120)")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _client():
    from chronicle.lab import host

    return host.incus_client()


def cmd_list(args: argparse.Namespace) -> int:
    root = site_root(args.root)
    lab = lab_dir(root)
    for definition in guestdef.discover(root):
        found = guestbuild.read_build(lab, definition.name)
        if found is None:
            state = "not built"
        elif found.key != guestbuild.build_key(definition):
            state = "built from an older definition"
        else:
            state = f"built ({len(found.packages)} packages, kernel {found.kernel_version})"
        print(f"{definition.name}\t{definition.suite}\t{definition.app.service}\t{state}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from chronicle.lab import host
    from chronicle.lab.setup import mirror_for

    root = site_root(args.root)
    definition = guestdef.find(root, args.name)
    client = _client()
    made = guestbuild.build(definition, lab_dir(root), client, mirror_for(definition.suite),
                            say=lambda line: _say(f"{definition.name}: {line}"))
    if made.skipped:
        _say(f"{definition.name}: unchanged since its build ({made.key[2:14]}), skipped")
    else:
        total = sum(made.seconds.values())
        _say(f"{definition.name}: built in {total:.1f} s: image {made.alias} "
             f"({made.fingerprint[:12]}), disk {made.disk} "
             f"({made.disk.stat().st_size // 2**20} MiB), {len(made.packages)} packages")
    vm = guestvm.ensure_image(client, definition, made, say=_say)
    derived = guestvm.read_disk(made)
    if not vm.skipped and derived is not None:
        _say(f"{definition.name}: VM image {vm.alias} ({vm.fingerprint[:12]}), disk "
             f"{derived.disk} ({derived.disk.stat().st_size // 2**20} MiB)")
    vm_ok, why_not = host.incus_vm_support(client)
    if not vm_ok:
        _say(f"{definition.name}: this host cannot start Incus VMs ({why_not}); "
             f"`chronicle lab guest try {definition.name} --as uefi-vm` boots the VM "
             f"image's disk under qemu instead")
    return 0


def cmd_try(args: argparse.Namespace) -> int:
    root = site_root(args.root)
    definition = guestdef.find(root, args.name)
    lab = lab_dir(root)
    made = guestbuild.read_build(lab, definition.name)
    if made is None or made.key != guestbuild.build_key(definition):
        raise LabError(f"{definition.name} is not built from this definition: run "
                       f"`chronicle lab guest build {definition.name}`", definition.path)
    for way in args.ways or WAYS:
        if way == "container":
            running = guestboot.running_container(_client(), definition, made, args.timeout)
        elif way == "microvm":
            running = guestboot.running_microvm(definition, made, args.timeout)
        else:
            running = guestvm.running_uefi(definition, made, args.timeout, say=_say)
        with running as booted:
            print(f"{definition.name} as a {way}: GET {definition.app.url} answered 200 "
                  f"{booted.seconds:.2f} s after start", flush=True)
    return 0
