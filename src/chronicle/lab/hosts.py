"""``site/lab.toml`` → the lab hosts: where ``lab run --on`` and ``lab hosts`` reach.

::

    inventory = "hosts.yml"     # optional: hosts from an Ansible inventory (YAML or INI)
    inventory_group = "lab"     # optional: only that group's hosts (children included)

    [hosts.kvmbox]
    ssh = "root@kvmbox.example.net"   # anything `ssh` accepts; ~/.ssh/config is honoured
    port = 22                         # optional
    identity = "~/.ssh/lab_ed25519"   # optional
    ssh_config = "lab_ssh_config"     # optional: `ssh -F`, instead of ~/.ssh/config
    incus = "https://kvmbox.example.net:8443"   # optional: this host's Incus API
    incus_target = "member2"          # optional: the cluster member instances go to
    workdir = "/srv/chronicle"        # optional: the host's working folder
    python = "/usr/bin/python3"       # optional: the interpreter Chronicle runs with there

A ``[hosts.NAME]`` table may also add to or override an inventory host of that name. A
host with ``incus`` needs no ``ssh``: ``lab run --incus`` reaches it through its API.
Relative paths are relative to ``site/``. The machine Chronicle runs on is the implicit
host ``local``. Every mistake is a LabError naming the file, the key and its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronicle.errors import LabError, read_toml, toml_key_line
from chronicle.lab.inventory import load_inventory

LOCAL = "local"
CONFIG_NAME = "lab.toml"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
TOP_KEYS = {"hosts": dict, "inventory": str, "inventory_group": str}
# key → (type name shown to the user, Python type)
HOST_KEYS: dict[str, tuple[str, type]] = {
    "ssh": ("a string", str),
    "port": ("an integer", int),
    "identity": ("a string", str),
    "ssh_config": ("a string", str),
    "incus": ("a string", str),
    "incus_target": ("a string", str),
    "workdir": ("a string", str),
    "python": ("a string", str),
}
# Ansible's connection variables (the old ansible_ssh_* spellings too) → our keys.
ANSIBLE_VARS = {
    "ansible_host": "host", "ansible_ssh_host": "host",
    "ansible_user": "user", "ansible_ssh_user": "user",
    "ansible_port": "port", "ansible_ssh_port": "port",
    "ansible_ssh_private_key_file": "identity", "ansible_private_key_file": "identity",
    "ansible_python_interpreter": "python",
}


@dataclass(frozen=True)
class LabHost:
    """One host. ``ssh`` is the destination as given; ``local`` has none, nor has a host
    reached only through its Incus API (``incus``)."""

    name: str
    ssh: str | None = None
    port: int | None = None
    identity: Path | None = None
    ssh_config: Path | None = None
    incus: str | None = None
    incus_target: str | None = None
    workdir: str | None = None
    python: str | None = None
    source: str = ""

    @property
    def is_local(self) -> bool:
        return self.name == LOCAL


def config_path(root: Path) -> Path:
    return root / "site" / CONFIG_NAME


def load_hosts(root: Path) -> dict[str, LabHost]:
    """``local`` plus every host of ``site/lab.toml`` (none when the file is absent)."""
    path = config_path(root)
    hosts = {LOCAL: LabHost(LOCAL, source="implicit")}
    if not path.exists():
        return hosts
    data, text = read_toml(path, LabError)
    hosts.update(parse_hosts(data, path, text))
    return hosts


def parse_hosts(data: dict[str, Any], path: Path, text: str = "") -> dict[str, LabHost]:
    def error(message: str, key: str) -> LabError:
        return LabError(message, path, toml_key_line(text, key.rsplit(".", 1)[-1])
                        if "." in key else toml_key_line(text, key))

    for key in sorted(data):
        if key not in TOP_KEYS:
            raise error(f"unknown key {key!r} (known: {', '.join(sorted(TOP_KEYS))})", key)
        if not isinstance(data[key], TOP_KEYS[key]):
            want = "a table" if TOP_KEYS[key] is dict else "a string"
            raise error(f"key {key!r} must be {want}", key)
    tables: dict[str, dict[str, Any]] = {}
    if "inventory" in data:
        tables.update(_inventory_tables(path.parent / data["inventory"],
                                        data.get("inventory_group"), path))
    elif "inventory_group" in data:
        raise error("key 'inventory_group' needs an 'inventory'", "inventory_group")
    for name, table in data.get("hosts", {}).items():
        key = f"hosts.{name}"
        if not isinstance(table, dict):
            raise error(f"key {key!r} must be a table", key)
        tables[name] = {**tables.get(name, {}), **_checked(table, key, path, text)}
    hosts = {}
    for name, table in tables.items():
        hosts[name] = _host(name, table, path, text)
    return hosts


def _checked(table: dict[str, Any], key: str, path: Path, text: str) -> dict[str, Any]:
    for field in sorted(table):
        if field not in HOST_KEYS:
            raise LabError(f"unknown key '{key}.{field}' (known: {', '.join(HOST_KEYS)})",
                           path, toml_key_line(text, field))
        type_name, kind = HOST_KEYS[field]
        value = table[field]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise LabError(f"key '{key}.{field}' must be {type_name}", path,
                           toml_key_line(text, field))
    return {**table, "source": str(path)}


def _inventory_tables(inventory: Path, group: str | None, path: Path
                      ) -> dict[str, dict[str, Any]]:
    found = load_inventory(inventory)
    if group is not None:
        if not any(group in host.groups for host in found):
            raise LabError(f"key 'inventory_group': no host of {inventory} is in group "
                           f"{group!r}", path)
        found = [host for host in found if group in host.groups]
    tables = {}
    for host in found:
        mapped = {ANSIBLE_VARS[k]: v for k, v in host.vars.items() if k in ANSIBLE_VARS}
        address = str(mapped.get("host", host.name))
        table: dict[str, Any] = {
            "ssh": f"{mapped['user']}@{address}" if "user" in mapped else address,
            "source": str(inventory),
        }
        if "port" in mapped:
            try:
                table["port"] = int(mapped["port"])
            except (TypeError, ValueError):
                raise LabError(f"host {host.name!r}: ansible_port {mapped['port']!r} is not "
                               "a number", inventory) from None
        for key in ("identity", "python"):
            if key in mapped:
                table[key] = str(mapped[key])
        tables[host.name] = table
    return tables


def _host(name: str, table: dict[str, Any], path: Path, text: str) -> LabHost:
    key = f"hosts.{name}"
    line = toml_key_line(text, key)
    if name == LOCAL:
        raise LabError(f"key {key!r}: {LOCAL!r} is this machine and cannot be declared",
                       path, line)
    if not NAME.match(name):
        raise LabError(f"key {key!r}: a host name is letters, digits, '.', '_' and '-'",
                       path, line)
    if not table.get("ssh") and not table.get("incus"):
        raise LabError(f"key '{key}.ssh' is required (the destination ssh reaches), or "
                       f"'{key}.incus' for a host reached only through its Incus API", path,
                       line)
    if table.get("ssh", "").startswith("-"):
        raise LabError(f"key '{key}.ssh' must be a destination, not an option", path,
                       toml_key_line(text, "ssh"))
    port = table.get("port")
    if port is not None and not 0 < port < 65536:
        raise LabError(f"key '{key}.port' must be between 1 and 65535", path,
                       toml_key_line(text, "port"))
    files = {}
    for field in ("identity", "ssh_config"):
        if table.get(field):
            found = (path.parent / Path(table[field]).expanduser()).resolve()
            if not found.is_file():
                raise LabError(f"key '{key}.{field}': no such file {found}", path,
                               toml_key_line(text, field))
            files[field] = found
    incus = table.get("incus")
    if incus is not None and not re.match(r"^https://[^/\s]+", incus):
        raise LabError(f"key '{key}.incus' must be an https:// URL", path,
                       toml_key_line(text, "incus"))
    if table.get("incus_target") is not None and incus is None:
        raise LabError(f"key '{key}.incus_target' needs '{key}.incus'", path,
                       toml_key_line(text, "incus_target"))
    return LabHost(name=name, ssh=table.get("ssh") or None, port=port,
                   identity=files.get("identity"),
                   ssh_config=files.get("ssh_config"), incus=incus,
                   incus_target=table.get("incus_target"),
                   workdir=table.get("workdir"), python=table.get("python"),
                   source=table["source"])


def pick(hosts: dict[str, LabHost], names: str, path: Path) -> list[LabHost]:
    """``--on a,b`` → those hosts, in that order; an unknown name lists the known ones."""
    chosen = []
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        if name not in hosts:
            raise LabError(f"unknown lab host {name!r} (known: {', '.join(hosts)})", path)
        if hosts[name] not in chosen:
            chosen.append(hosts[name])
    if not chosen:
        raise LabError("--on needs at least one host name")
    return chosen
