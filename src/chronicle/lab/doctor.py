"""``chronicle lab doctor``: what this host can run, found by looking, never by changing.

A report, so it exits 0 even when parts are missing; ``--require incus,qemu`` turns
missing parts into exit 1 (for CI). ``--json`` prints the same facts for machines.
The one thing it ends is a run left behind by a killed ``lab run`` of this site (its
owner is gone, so nobody else would): see ``leftovers``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chronicle.errors import ChronicleError
from chronicle.lab import containment, guest, host, image, incusd, leftovers
from chronicle.lab.experiment import discover
from chronicle.paths import SitePaths, find_root, lab_dir


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Report:
    checks: list[Check]
    experiments: list[dict[str, object]] = field(default_factory=list)

    def ok(self, name: str) -> bool:
        return any(c.ok for c in self.checks if c.name == name)

    def detail(self, name: str) -> str:
        return next((c.detail for c in self.checks if c.name == name), "")


# Which checks a subject needs; experiments are matched to subjects through their tags.
SUBJECT_NEEDS = {
    "qemu-microvm": ("qemu", "guest-assets"),
    "microvm-run": ("qemu", "guest-assets"),
    "incus-container": ("incus", "incus-containers", "image-busybox"),
    "incus-vm": ("incus", "incus-vms", "uefi"),
    "qemu-uefi": ("qemu", "uefi"),
    "firecracker": ("firecracker", "guest-assets"),
    "cloud-hypervisor": ("cloud-hypervisor", "guest-assets"),
}
TAG_SUBJECTS = {
    "qemu": ("qemu-microvm",),
    "microvm": ("qemu-microvm", "microvm-run", "firecracker", "cloud-hypervisor"),
    "microvm-nix": ("microvm-run",),
    "incus": ("incus-container", "incus-vm"),
    "container": ("incus-container",),
    "firecracker": ("firecracker",),
    "cloud-hypervisor": ("cloud-hypervisor",),
}


def _incus_checks() -> list[Check]:
    if not incusd.answering():
        why = "socket missing" if not host.incus_socket().exists() else "not answering"
        return [Check("incus", False, f"{why}: run `chronicle lab setup`"),
                Check("incus-containers", False, "Incus not reachable"),
                Check("incus-vms", False, "Incus not reachable"),
                Check("image-busybox", False, "Incus not reachable")]
    client = host.incus_client()
    env = client.host_info.get("environment", {})
    drivers = str(env.get("driver", ""))
    vm_ok, vm_reason = host.incus_vm_support(client)
    pool = client.storage_pools.exists(incusd.POOL)
    return [
        Check("incus", True, f"version {host.incus_version(client)}, storage pool "
                             f"{incusd.POOL} {'present' if pool else 'missing'}"),
        Check("incus-containers", "lxc" in drivers, f"drivers: {drivers or 'none'}"),
        Check("incus-vms", vm_ok, vm_reason),
        Check("image-busybox", image.has_alias(client, image.BUSYBOX_ALIAS),
              f"alias {image.BUSYBOX_ALIAS}"),
        Check("image-debian", image.has_alias(client, image.DEBIAN_ALIAS),
              f"alias {image.DEBIAN_ALIAS} (setup --debian)"),
    ]


def _guest_check(lab: Path) -> Check:
    try:
        assets = guest.guest_assets(lab)
    except ChronicleError as exc:
        return Check("guest-assets", False, str(exc))
    return Check("guest-assets", True, f"{assets.kernel_version} in {lab}")


def _uefi_check() -> Check:
    """What a guest's VM image needs: a boot loader to put on it, firmware to boot it."""
    from chronicle.lab import guestvm

    try:
        code, _ = guestvm.firmware()
    except ChronicleError as exc:
        return Check("uefi", False, str(exc))
    if not guestvm.BOOT_LOADER.is_file():
        return Check("uefi", False, f"no {guestvm.BOOT_LOADER} (systemd-boot-efi: run "
                                    f"`chronicle lab setup`)")
    return Check("uefi", True, f"firmware {code}, boot loader {guestvm.BOOT_LOADER}")


def _containment_check() -> Check:
    parent, why = containment.runs_parent()
    if parent is None:
        return Check("containment", False, f"{containment.WEAKER} ({why})")
    return Check("containment", True, why)


def collect(lab: Path | None = None, root: Path | None = None) -> Report:
    kind = host.kvm_kind()
    qemu = host.qemu_version()
    checks = [
        Check("kvm", kind == "hw", f"kind {kind}; VMs use {host.accelerator(kind)}"),
        Check("qemu", qemu is not None,
              f"version {qemu}, accelerator {host.accelerator(kind)}" if qemu
              else "qemu-system-x86_64 not on PATH"),
        _containment_check(),
        *_incus_checks(),
        _guest_check(lab or lab_dir(root)),
        _uefi_check(),
    ]
    for tool in ("firecracker", "cloud-hypervisor"):
        version = host.tool_version(tool)
        checks.append(Check(tool, version is not None, version or "not on PATH"))
    return Report(checks, _experiments(Report(checks), root))


def subject_status(report: Report, subject: str) -> tuple[bool, str]:
    missing = [need for need in SUBJECT_NEEDS[subject] if not report.ok(need)]
    if not missing:
        return True, "ok"
    return False, "; ".join(f"{m}: {report.detail(m)}" for m in missing)


def subjects_for_tags(tags: tuple[str, ...]) -> tuple[str, ...]:
    """The subjects an experiment boots, from its tags; none for host-only experiments
    (tagged only by what they measure, like ``baseline``), which run anywhere."""
    chosen = [s for t in tags for s in TAG_SUBJECTS.get(t, ())]
    return tuple(dict.fromkeys(chosen))


def _experiments(report: Report, root: Path | None) -> list[dict[str, object]]:
    try:
        experiments = discover(root or find_root())
    except ChronicleError:  # no site here, or a bad block: `lab list` names it
        experiments = []
    rows = []
    for exp in experiments:
        status = {s: subject_status(report, s) for s in subjects_for_tags(tuple(exp.tags))}
        rows.append({
            "name": exp.name, "tags": list(exp.tags),
            "runs": [s for s, (ok, _) in status.items() if ok],
            "cannot": {s: why for s, (ok, why) in status.items() if not ok},
        })
    return rows


def render(report: Report) -> str:
    lines = ["Host"]
    for c in report.checks:
        lines.append(f"  {'ok ' if c.ok else '-- '} {c.name:<19} {c.detail}")
    lines.append("Subjects")
    for subject in SUBJECT_NEEDS:
        ok, why = subject_status(report, subject)
        lines.append(f"  {'ok ' if ok else '-- '} {subject:<19} {why}")
    if report.experiments:
        lines.append("Experiments")
        for row in report.experiments:
            if row["runs"] or row["cannot"]:
                runs = "runs " + (", ".join(row["runs"]) or "nothing")
            else:
                runs = "host only: runs anywhere"
            lines.append(f"  {row['name']} [{', '.join(row['tags'])}]: {runs}")
            for subject, why in row["cannot"].items():
                lines.append(f"      not {subject}: {why}")
    return "\n".join(lines)


def missing_required(report: Report, required: list[str]) -> list[str]:
    return [name for name in required if not report.ok(name)]


def _sweep(root: Path | None) -> None:
    try:
        root = root.resolve() if root else find_root()
    except ChronicleError:
        return  # outside a site: no run records to look at
    for line in leftovers.sweep(SitePaths(root).cache):
        print(f"chronicle: {line}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    _sweep(args.root)
    report = collect(root=args.root.resolve() if args.root else None)
    if args.json:
        print(json.dumps(asdict(report), indent=1))
    else:
        print(render(report))
    required = [r.strip() for r in (args.require or "").split(",") if r.strip()]
    missing = missing_required(report, required)
    if missing:
        print("missing required: " + ", ".join(missing))
        return 1
    return 0


def register(lab_sub: argparse._SubParsersAction) -> None:
    d = lab_sub.add_parser("doctor", help="report what this host can run and end runs "
                                          "a killed `lab run` left behind")
    d.add_argument("--require", metavar="PARTS",
                   help="comma-separated checks that must pass, e.g. incus,qemu (exit 1 if not)")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.add_argument("--root", type=Path, metavar="DIR",
                   help="site root whose left-behind runs to end (default: the folder "
                        "above holding site/site.toml)")
    d.set_defaults(func=run)
