"""Hosts from an Ansible inventory file, YAML or INI: name → the variables that reach it.

Only what Ansible's documentation says a static inventory holds: groups with hosts,
``vars`` and ``children``; ``all`` and ``ungrouped``; host ranges (``web[01:03]``,
``db-[a:c]``, with a stride ``[0:10:2]``). Variables reach a host from the groups it is
in, parents before children, and its own last. YAML is read with PyYAML. INI is read
here: Python's ``configparser`` rejects Ansible's host lines (a name with no ``=``), and
no maintained package reads the format without pulling in Ansible itself; each line
is split with ``shlex`` as Ansible does. Dynamic inventories (scripts, plugins) are
not run.
"""

from __future__ import annotations

import re
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chronicle.errors import LabError

_RANGE = re.compile(r"\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::([0-9]+))?\]")


@dataclass
class _Group:
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class InventoryHost:
    name: str
    vars: dict[str, Any]
    groups: tuple[str, ...]


def load_inventory(path: Path) -> list[InventoryHost]:
    """Every host of the inventory at ``path``, in file order; LabError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabError("inventory file not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabError(f"cannot read the inventory: {exc}", path) from None
    if path.suffix in (".yml", ".yaml") or text.lstrip().startswith(("---", "all:")):
        groups = _yaml_groups(text, path)
    else:
        groups = _ini_groups(text, path)
    return _resolve(groups, path)


def expand_range(pattern: str, path: Path, line: int | None = None) -> list[str]:
    """``web[01:03].lan`` → web01.lan, web02.lan, web03.lan (leading zeros kept)."""
    found = _RANGE.search(pattern)
    if found is None:
        return [pattern]
    first, last, stride = found.group(1), found.group(2), int(found.group(3) or 1)
    head, tail = pattern[:found.start()], pattern[found.end():]
    if first.isdigit() and last.isdigit():
        width = len(first) if first.startswith("0") else 0
        items = [str(n).zfill(width) for n in range(int(first), int(last) + 1, stride)]
    elif len(first) == len(last) == 1 and first.isalpha() and last.isalpha():
        letters = string.ascii_letters
        items = list(letters[letters.index(first):letters.index(last) + 1:stride])
    else:
        raise LabError(f"bad host range {found.group(0)!r} in {pattern!r}", path, line)
    if not items or stride < 1:
        raise LabError(f"empty host range {found.group(0)!r} in {pattern!r}", path, line)
    return [name for item in items for name in expand_range(head + item + tail, path, line)]


# -- INI ------------------------------------------------------------------------------------


def _ini_groups(text: str, path: Path) -> dict[str, _Group]:
    groups: dict[str, _Group] = {"all": _Group(), "ungrouped": _Group()}
    name, kind = "ungrouped", "hosts"
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        header = re.fullmatch(r"\[([^\]:\s]+)(?::(vars|children))?\]", line)
        if header:
            name, kind = header.group(1), header.group(2) or "hosts"
            groups.setdefault(name, _Group())
            continue
        if line.startswith("["):
            raise LabError(f"bad section header {line!r} (want [group], [group:vars] or "
                           "[group:children])", path, number)
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise LabError(f"cannot split the line: {exc}", path, number) from None
        if not words:
            continue
        group = groups[name]
        if kind == "vars":
            group.vars.update(_assignments(words, path, number))
        elif kind == "children":
            if len(words) != 1 or "=" in words[0]:
                raise LabError(f"a [{name}:children] line names one group, not {line!r}",
                               path, number)
            group.children.append(words[0])
        else:
            pattern, host_vars = words[0], _assignments(words[1:], path, number)
            if "=" in pattern:
                raise LabError(f"a host line starts with the host's name, not {pattern!r}",
                               path, number)
            pattern, port = _split_port(pattern)
            if port is not None:
                host_vars.setdefault("ansible_port", port)
            for host in expand_range(pattern, path, number):
                group.hosts.setdefault(host, {}).update(host_vars)
    return groups


def _assignments(words: list[str], path: Path, line: int) -> dict[str, str]:
    found = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise LabError(f"expected key=value, found {word!r}", path, line)
        found[key] = value
    return found


def _split_port(pattern: str) -> tuple[str, int | None]:
    """``host:2222`` → (host, 2222); an IPv6 address or a range keeps its colons."""
    head, sep, tail = pattern.rpartition(":")
    if sep and tail.isdigit() and "]" not in tail and head.count(":") == 0:
        return head, int(tail)
    return pattern, None


# -- YAML -----------------------------------------------------------------------------------


def _yaml_groups(text: str, path: Path) -> dict[str, _Group]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise LabError(f"YAML error: {getattr(exc, 'problem', exc)}", path,
                       mark.line + 1 if mark else None) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise LabError("an inventory is a mapping of groups (all:, …)", path)
    groups: dict[str, _Group] = {"all": _Group(), "ungrouped": _Group()}
    for name, body in data.items():
        _yaml_group(str(name), body, groups, path)
    return groups


def _yaml_group(name: str, body: Any, groups: dict[str, _Group], path: Path) -> None:
    group = groups.setdefault(name, _Group())
    if body is None:
        return
    if not isinstance(body, dict):
        raise LabError(f"group {name!r}: expected a mapping with hosts, vars or children",
                       path)
    for key in body:
        if key not in ("hosts", "vars", "children"):
            raise LabError(f"group {name!r}: unknown key {key!r} (known: children, hosts, "
                           "vars)", path)
    for key in ("hosts", "vars", "children"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise LabError(f"group {name!r}: {key} must be a mapping", path)
    for pattern, host_vars in (body.get("hosts") or {}).items():
        if host_vars is not None and not isinstance(host_vars, dict):
            raise LabError(f"host {pattern!r}: its variables must be a mapping", path)
        for host in expand_range(str(pattern), path):
            group.hosts.setdefault(host, {}).update(host_vars or {})
    group.vars.update(body.get("vars") or {})
    for child, child_body in (body.get("children") or {}).items():
        group.children.append(str(child))
        _yaml_group(str(child), child_body, groups, path)


# -- both -----------------------------------------------------------------------------------


def _resolve(groups: dict[str, _Group], path: Path) -> list[InventoryHost]:
    for name, group in groups.items():
        for child in group.children:
            if child not in groups:
                raise LabError(f"group {name!r} names an unknown child group {child!r}", path)
    parents: dict[str, list[str]] = {name: [] for name in groups}
    for name, group in groups.items():
        for child in group.children:
            parents[child].append(name)

    def lineage(name: str, seen: tuple[str, ...] = ()) -> list[str]:
        """The group's ancestors, farthest first, then itself; ``all`` is everyone's root."""
        if name in seen:
            raise LabError(f"group {name!r} is its own ancestor", path)
        chain: list[str] = []
        for parent in parents[name]:
            chain += [g for g in lineage(parent, (*seen, name)) if g not in chain]
        if name != "all" and "all" not in chain:
            chain.insert(0, "all")
        return [*chain, name]

    order: list[str] = []
    member: dict[str, list[str]] = {}
    for name, group in groups.items():
        for host in group.hosts:
            if host not in member:
                order.append(host)
                member[host] = []
            member[host].append(name)
    found = []
    for host in order:
        chain: list[str] = []
        for name in member[host]:
            chain += [g for g in lineage(name) if g not in chain]
        merged: dict[str, Any] = {}
        for name in chain:
            merged.update(groups[name].vars)
        for name in member[host]:
            merged.update(groups[name].hosts[host])
        found.append(InventoryHost(host, merged, tuple(chain)))
    return found
