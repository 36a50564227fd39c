"""``chronicle lab hosts`` and the ``--on HOST`` of ``lab run``, ``lab doctor``, ``lab setup``.

Thin, like the rest of the command line: the hosts come from :mod:`chronicle.lab.hosts`,
the work over ssh is :mod:`chronicle.lab.remote`'s.
"""

from __future__ import annotations

import argparse
import threading
from dataclasses import asdict
from pathlib import Path

from chronicle.errors import ChronicleError, LabError
from chronicle.lab import experiment as exp
from chronicle.lab import hosts as lab_hosts
from chronicle.lab import incus_remote, remote
from chronicle.paths import lab_dir, site_command, site_root


def register(lab_sub: argparse._SubParsersAction) -> None:
    """Add ``hosts``, and ``--on`` to the run, doctor and setup commands already there."""
    site_command(lab_sub, "hosts", cmd_hosts,
                 "the lab hosts of site/lab.toml: reachable, and what each can run")
    p = site_command(lab_sub, "trust", cmd_trust,
                     "pin a lab host's Incus certificate and, with a token, be trusted")
    p.add_argument("host", metavar="HOST")
    p.add_argument("--token", metavar="TOKEN",
                   help="a trust token made on the host by `incus config trust add NAME`")
    on_help = "on these hosts of site/lab.toml (comma-separated) instead of this machine"
    for name, action in (("run", _run_on), ("doctor", _doctor_on), ("setup", _setup_on)):
        parser = lab_sub.choices[name]
        parser.add_argument("--on", metavar="HOST[,HOST…]", help=on_help)
        if name != "run" and not any(a.dest == "root" for a in parser._actions):
            parser.add_argument("--root", type=Path, metavar="DIR", help=argparse.SUPPRESS)
        parser.set_defaults(func=_either(parser.get_default("func"), action))
    # How the host's own `lab run` learns the name this checkout gives it, and the git
    # state of this checkout (the host's copy is no checkout).
    lab_sub.choices["run"].add_argument("--as-host", default=lab_hosts.LOCAL,
                                        help=argparse.SUPPRESS)
    lab_sub.choices["run"].add_argument("--git-state", metavar="JSON", help=argparse.SUPPRESS)


def _either(here, there):
    return lambda args: there(args) if args.on else here(args)


def _chosen(args: argparse.Namespace, single: bool = False):
    root = site_root(args.root)
    hosts = lab_hosts.load_hosts(root)
    chosen = lab_hosts.pick(hosts, args.on, lab_hosts.config_path(root))
    if any(h.is_local for h in chosen):
        raise LabError("--on names remote hosts; for this machine leave --on out")
    for host in chosen:
        if host.ssh is None:
            raise LabError(f"host {host.name!r} has no 'ssh' for --on to reach; its Incus API "
                           f"is reached with `chronicle lab run --incus {host.name}`",
                           lab_hosts.config_path(root))
    if single and len(chosen) > 1:
        raise LabError("this command takes one host with --on")
    return root, chosen


def _run_on(args: argparse.Namespace) -> int:
    if args.incus:
        raise LabError("--incus reaches a host's Incus API from here; --on runs there: "
                       "choose one")
    root, chosen = _chosen(args)
    experiments = exp.select(exp.discover(root), args.names, args.tag)
    if not experiments:
        raise LabError("no experiments to run", root / "experiments")
    run_args = [*(["--force"] if args.force else []), *(["--quick"] if args.quick else []),
                *(["--again"] if args.again else []),
                *(["--repeat", str(args.repeat)] if args.repeat is not None else []),
                "--seed", str(args.seed)]
    with remote.Hosts(chosen, root) as hosts:
        return remote.run_on_hosts(root, hosts, experiments, run_args)


def _doctor_on(args: argparse.Namespace) -> int:
    root, chosen = _chosen(args, single=True)
    passed = [*(["--require", args.require] if args.require else []),
              *(["--json"] if args.json else [])]
    with remote.Hosts(chosen, root) as hosts:
        return remote.doctor_on(root, hosts, passed)


def _setup_on(args: argparse.Namespace) -> int:
    root, chosen = _chosen(args, single=True)
    passed = [*(["--debian"] if args.debian else []),
              *(["--skip-incus"] if args.skip_incus else []),
              *(["--skip-qemu"] if args.skip_qemu else [])]
    with remote.Hosts(chosen, root) as hosts:
        return remote.setup_on(root, hosts, passed)


def _incus_host(root: Path, name: str) -> lab_hosts.LabHost:
    hosts = lab_hosts.load_hosts(root)
    path = lab_hosts.config_path(root)
    chosen = lab_hosts.pick(hosts, name, path)
    if len(chosen) != 1:
        raise LabError("--incus takes one lab host", path)
    if chosen[0].incus is None:
        raise LabError(f"host {name!r} has no 'incus' URL (add `incus = \"https://…:8443\"` "
                       f"to [hosts.{name}])", path)
    return chosen[0]


def incus_remote_of(root: Path, name: str) -> incus_remote.Remote:
    """``--incus NAME``: that host's Incus API, checked (answers, pinned, trusted)."""
    return incus_remote.remote(lab_dir(root), _incus_host(root, name))


def cmd_trust(args: argparse.Namespace) -> int:
    root = site_root(args.root)
    host = _incus_host(root, args.host)
    found, new, client = incus_remote.trust(lab_dir(root), host, args.token)
    state = "pinned" if new else "already pinned"
    print(f"{host.name}: {host.incus} certificate sha256 {found} ({state})")
    if not client.trusted:
        raise LabError(f"host {host.name!r}: not trusted yet: on the host run `incus config "
                       f"trust add {incus_remote.CLIENT_NAME}` and pass the token with "
                       f"--token")
    incus_remote.connect(lab_dir(root), host)  # and the target, if any, is a member
    print(f"{host.name}: trusted")
    return 0


def cmd_hosts(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from chronicle.lab import doctor

    root = site_root(args.root)
    hosts = list(lab_hosts.load_hosts(root).values())
    rows: dict[str, tuple[bool, str]] = {}
    rows[lab_hosts.LOCAL] = (True, remote.summary(asdict(doctor.collect(root=root))))
    remotes = [h for h in hosts if not h.is_local and h.ssh]
    for host in hosts:
        if not host.is_local and not host.ssh:
            rows[host.name] = (True, "no ssh: only its Incus API")
    with remote.Hosts(remotes, root) as connections:
        def look(conn: remote.Connection) -> None:
            try:
                conn.open()
                remote.ship(conn, remote.bundle(root, [], conn.host.name))
                rows[conn.host.name] = (True, remote.summary(remote.doctor_report(conn)))
            except remote.HostBusy as exc:
                rows[conn.host.name] = (True, str(exc))
            except (ChronicleError, OSError) as exc:
                rows[conn.host.name] = (False, str(exc))

        threads = [threading.Thread(target=look, args=(conn,))
                   for conn in connections.connections.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    apis = {h.name: incus_remote.status(lab_dir(root), h) for h in hosts if h.incus}
    console = Console(highlight=False, width=None if Console().is_terminal else 200)
    table = Table(title="lab hosts")
    for column in ("host", "ssh", "reachable", "can run", "Incus API"):
        table.add_column(column)
    for host in hosts:
        ok, text = rows[host.name]
        api_ok, api = apis.get(host.name, (True, ""))
        where = host.ssh or ("(this machine)" if host.is_local else "(none)")
        table.add_row(host.name, where,
                      "[green]yes[/]" if ok else "[red]no[/]", escape(text),
                      escape(api) if api_ok else f"[red]no[/]: {escape(api)}")
    console.print(table)
    return 0 if all(ok for ok, _ in [*rows.values(), *apis.values()]) else 1
