"""``site/site.toml`` → a validated, immutable :class:`SiteConfig`.

Every setting is declared once, with its type and default, in ``SETTINGS``. An unknown
key, a wrong type or a bad value is a :class:`BuildError` naming the key and the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chronicle.errors import BuildError, read_toml, toml_key_line


@dataclass(frozen=True)
class MenuLink:
    title: str
    url: str


@dataclass(frozen=True)
class SiteConfig:
    title: str
    description: str
    base_url: str
    author: str
    language: str = "en"
    timezone: str = "UTC"
    posts_per_page: int = 10
    theme: str = "chronicle"
    menu: tuple[MenuLink, ...] = ()
    source: Path | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


# key → (type name shown to the user, Python type, required)
SETTINGS: dict[str, tuple[str, type, bool]] = {
    "title": ("a string", str, True),
    "description": ("a string", str, False),
    "base_url": ("a string", str, True),
    "author": ("a string", str, False),
    "language": ("a string", str, False),
    "timezone": ("a string", str, False),
    "posts_per_page": ("an integer", int, False),
    "theme": ("a string", str, False),
    "menu": ("an array of tables", list, False),
}
MENU_KEYS = {"title", "url"}
# Tables read and validated by another command: [publish.NAME] by chronicle.publish.
OTHER_TABLES = {"publish"}


def load_config(path: Path) -> SiteConfig:
    data, raw = read_toml(path, BuildError, "site config")
    return parse_config(data, path, raw)


def parse_config(data: dict[str, Any], path: Path, text: str = "") -> SiteConfig:
    """``text``, the file's TOML, lets a message name the line of the key it is about."""

    def error(message: str, key: str) -> BuildError:
        return BuildError(message, path, toml_key_line(text, key))

    for key in sorted(data):
        if key not in SETTINGS and key not in OTHER_TABLES:
            raise error(f"unknown key {key!r} (known: {', '.join(sorted(SETTINGS))})", key)
    values: dict[str, Any] = {}
    for key, (type_name, kind, required) in SETTINGS.items():
        if key not in data:
            if required:
                raise BuildError(f"missing required key {key!r}", path)
            continue
        value = data[key]
        # bool is an int in Python; a posts_per_page of `true` is still a mistake
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise error(f"key {key!r} must be {type_name}, not {_toml_type(value)}", key)
        values[key] = value

    if "menu" in values:
        values["menu"] = tuple(_menu_link(item, index, path) for index, item in
                               enumerate(values["menu"], start=1))
    base_url = values["base_url"]
    if not re.match(r"^https?://[^/]+", base_url):
        raise error("key 'base_url' must be an http(s) URL", "base_url")
    values["base_url"] = base_url.rstrip("/") + "/"
    if values.get("posts_per_page", 10) < 1:
        raise error("key 'posts_per_page' must be at least 1", "posts_per_page")
    try:
        ZoneInfo(values.get("timezone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        zone = values["timezone"]
        raise error(f"key 'timezone': unknown time zone {zone!r}", "timezone") from None
    if not re.fullmatch(r"[A-Za-z0-9_-]+", values.get("theme", "chronicle")):
        raise error("key 'theme' must be a plain folder name", "theme")
    values.setdefault("description", "")
    values.setdefault("author", "")
    return SiteConfig(source=path, **values)


def _menu_link(item: Any, index: int, path: Path) -> MenuLink:
    if not isinstance(item, dict):
        raise BuildError(f"key 'menu' entry {index} must be a table with title and url", path)
    for key in sorted(item):
        if key not in MENU_KEYS:
            raise BuildError(f"unknown key 'menu.{key}' in menu entry {index}", path)
    for key in sorted(MENU_KEYS):
        if not isinstance(item.get(key), str):
            raise BuildError(f"key 'menu.{key}' in menu entry {index} must be a string", path)
    return MenuLink(title=item["title"], url=item["url"])


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)
