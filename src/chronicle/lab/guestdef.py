"""``experiments/guests/<name>.toml`` → a validated, immutable :class:`GuestDefinition`.

A guest is a Debian system serving one app, declared the way a microvm.nix module
declares one, but from Debian packages::

    description = "Debian's nginx serving one page"
    suite = "bookworm"
    packages = ["nginx-light"]

    [app]
    service = "nginx.service"   # the systemd unit that is the app
    port = 80                   # where it listens inside the guest
    url = "/"                   # the path that must answer 200 once it is up

    [[files]]                   # placed after the packages, so they may replace theirs
    path = "/var/www/html/index.html"
    source = "static-nginx/index.html"   # beside this file: a file or a whole folder
    mode = "0644"                        # or content = "…" instead of source

Every key is declared once below with its type; an unknown key, a wrong type or a
missing one is a ``LabError`` naming the file and the line. The definition's ``key``
hashes the TOML and every file it places: the build's cache key, and an input of any
experiment that boots the guest.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from chronicle.errors import LabError, read_toml

NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
SUITE = re.compile(r"^[a-z]+$")
PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
UNIT = re.compile(r"^[A-Za-z0-9@._-]+\.service$")

# key → (type name shown to the user, check, required)
_STR = ("a string", lambda v: isinstance(v, str))
_STRS = ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
_INT = ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
_TABLE = ("a table", lambda v: isinstance(v, dict))
_TABLES = ("an array of tables", lambda v: isinstance(v, list) and all(isinstance(x, dict)
                                                                         for x in v))
TOP: dict[str, tuple[tuple[str, Any], bool]] = {
    "description": (_STR, False),
    "suite": (_STR, True),
    "packages": (_STRS, True),
    "run": (_STRS, False),
    "app": (_TABLE, True),
    "files": (_TABLES, False),
}
APP: dict[str, tuple[tuple[str, Any], bool]] = {
    "service": (_STR, True),
    "port": (_INT, True),
    "url": (_STR, True),
}
FILE: dict[str, tuple[tuple[str, Any], bool]] = {
    "path": (_STR, True),
    "source": (_STR, False),
    "content": (_STR, False),
    "mode": (_STR, False),
}


@dataclass(frozen=True)
class App:
    service: str
    port: int
    url: str


@dataclass(frozen=True)
class PlacedFile:
    """``path`` inside the guest; from ``source`` (a file or folder) or ``content``."""

    path: str
    source: Path | None = None
    content: str | None = None
    mode: int | None = None  # None: a source keeps its own, content gets 0644


@dataclass(frozen=True)
class GuestDefinition:
    name: str
    path: Path
    suite: str
    packages: tuple[str, ...]
    app: App
    files: tuple[PlacedFile, ...] = ()
    run: tuple[str, ...] = ()
    description: str = ""

    @property
    def key(self) -> str:
        """sha256 of the definition and of every file it places (names, modes, bytes)."""
        digest = hashlib.sha256(self.path.read_bytes())
        for path in self.input_files()[1:]:
            name = path.relative_to(self.path.parent).as_posix()
            digest.update(b"\0" + name.encode() + b"\0" + str(path.stat().st_mode).encode())
            digest.update(b"\0" + path.read_bytes())
        return digest.hexdigest()

    def input_files(self) -> list[Path]:
        """The definition and every file its ``source`` entries name, sorted, on disk."""
        found: set[Path] = set()
        for placed in self.files:
            if placed.source is None:
                continue
            if placed.source.is_dir():
                found |= {p for p in placed.source.rglob("*") if p.is_file()}
            else:
                found.add(placed.source)
        return [self.path, *sorted(found)]


def guests_dir(root: Path) -> Path:
    return root / "experiments" / "guests"


def definition_path(root: Path, name: str) -> Path:
    return guests_dir(root) / f"{name}.toml"


def discover(root: Path) -> list[GuestDefinition]:
    """Every guest definition in ``experiments/guests``, sorted by name."""
    folder = guests_dir(root)
    if not folder.is_dir():
        return []
    return [load(path) for path in sorted(folder.glob("*.toml"))]


def find(root: Path, name: str) -> GuestDefinition:
    path = definition_path(root, name)
    if not path.is_file():
        known = ", ".join(d.name for d in discover(root)) or "none"
        raise LabError(f"no guest definition {name!r} (defined: {known})", path)
    return load(path)


def load(path: Path) -> GuestDefinition:
    data, text = read_toml(path, LabError, "guest definition")
    return parse(data, path, text)


def key_line(text: str, key: str, table: str | None = None, index: int = 0) -> int | None:
    """The line of ``key = …`` at the top level or inside ``[table]`` (the ``index``-th
    ``[[table]]``); the table's own line when the key is not written in it."""
    header = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$")
    assignment = re.compile(rf"^\s*{re.escape(key)}\s*=")
    current, seen, opened = None, -1, None
    for number, line in enumerate(text.splitlines(), start=1):
        found = header.match(line)
        if found:
            current = found.group(1)
            if current == table:
                seen += 1
                if seen == index:
                    opened = number
            continue
        if assignment.match(line) and current == table and (table is None or seen == index):
            return number
    return opened


def _check_keys(values: dict[str, Any], schema: dict, where: str, path: Path, text: str,
                table: str | None = None, index: int = 0) -> None:
    def line(key: str) -> int | None:
        return key_line(text, key, table, index)

    for key in values:
        if key not in schema:
            known = ", ".join(schema)
            raise LabError(f"unknown key {(where + key)!r} (known: {known})", path, line(key))
    for key, ((type_name, is_type), required) in schema.items():
        if key not in values:
            if required:
                raise LabError(f"missing required key {(where + key)!r}", path, line(key))
            continue
        if not is_type(values[key]):
            raise LabError(f"key {(where + key)!r} must be {type_name}", path, line(key))


def parse(data: dict[str, Any], path: Path, text: str = "") -> GuestDefinition:
    name = path.stem
    if not NAME.match(name):
        raise LabError(f"guest name {name!r} must be lower-case letters, digits and '-'", path)
    _check_keys(data, TOP, "", path, text)

    def error(message: str, key: str, table: str | None = None, index: int = 0) -> LabError:
        return LabError(message, path, key_line(text, key, table, index))

    if not SUITE.match(data["suite"]):
        raise error(f"key 'suite' must be a Debian codename such as bookworm, not "
                    f"{data['suite']!r}", "suite")
    if not data["packages"]:
        raise error("key 'packages' must name at least one package", "packages")
    for package in data["packages"]:
        if not PACKAGE.match(package):
            raise error(f"key 'packages': {package!r} is not a Debian package name", "packages")

    app = data["app"]
    _check_keys(app, APP, "app.", path, text, "app")
    if not UNIT.match(app["service"]):
        raise error("key 'app.service' must be a systemd unit name ending in .service",
                    "service", "app")
    if not 0 < app["port"] < 65536:
        raise error("key 'app.port' must be a TCP port (1-65535)", "port", "app")
    if not app["url"].startswith("/"):
        raise error("key 'app.url' must be a path on the app's port, starting with '/'",
                    "url", "app")

    files = tuple(_placed(entry, index, path, text)
                  for index, entry in enumerate(data.get("files", [])))
    return GuestDefinition(
        name=name, path=path, suite=data["suite"], packages=tuple(data["packages"]),
        app=App(app["service"], app["port"], app["url"]), files=files,
        run=tuple(data.get("run", [])), description=data.get("description", ""),
    )


def _placed(entry: dict[str, Any], index: int, path: Path, text: str) -> PlacedFile:
    where = f"files[{index}]."
    _check_keys(entry, FILE, where, path, text, "files", index)

    def error(message: str, key: str) -> LabError:
        return LabError(f"key {(where + key)!r}: {message}", path,
                        key_line(text, key, "files", index))

    target = PurePosixPath(entry["path"])
    if not target.is_absolute() or ".." in target.parts or str(target) == "/":
        raise error("must be an absolute path inside the guest, without '..'", "path")
    if ("source" in entry) == ("content" in entry):
        raise error("give exactly one of 'source' and 'content'", "path")
    mode = None
    if "mode" in entry:
        if not re.fullmatch(r"0?[0-7]{3,4}", entry["mode"]):
            raise error(f"must be an octal mode such as \"0644\", not {entry['mode']!r}", "mode")
        mode = int(entry["mode"], 8)
    source = None
    if "source" in entry:
        source = (path.parent / entry["source"]).resolve()
        if not source.is_relative_to(path.parent.resolve()):
            raise error("must stay inside the definitions' folder", "source")
        if not source.exists():
            raise error(f"{entry['source']} does not exist beside the definition", "source")
    return PlacedFile(path=str(target), source=source, content=entry.get("content"), mode=mode)
