"""What Hugo and Jekyll files share: front matter in YAML, TOML or JSON, loose dates,
and code blocks with marked lines.

Every parse error is a :class:`BuildError` naming the file and the line in it."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from chronicle.errors import BuildError, toml_error_line

DATE_PREFIX = re.compile(r"^(\d{4})-(\d{2})-(\d{2})-")
# the date-and-time forms Jekyll and Hugo accept beside ISO 8601
LOOSE_DATES = ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M %z", "%Y-%m-%d %H:%M:%S",
               "%Y-%m-%d %H:%M")


def split(text: str, path: Path, formats: str = "yaml toml json"
          ) -> tuple[dict[str, Any], str, int, list[str]] | None:
    """``(front matter, body, the body's first line, the front matter's lines)``, or None
    for a file without front matter. ``formats`` are those the engine reads."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    first = lines[0].rstrip()
    if first == "---" and "yaml" in formats:
        end = _closing(lines, ("---", "..."), path)
        meta = _yaml("\n".join(lines[1:end]), path)
    elif first == "+++" and "toml" in formats:
        end = _closing(lines, ("+++",), path)
        try:
            meta = tomllib.loads("\n".join(lines[1:end]))
        except tomllib.TOMLDecodeError as exc:
            line = toml_error_line(exc)
            raise BuildError(f"TOML error in front matter: {str(exc).split(' (at')[0]}", path,
                             line + 1 if line else 1) from None
    elif first.startswith("{") and "json" in formats:
        try:
            meta, consumed = json.JSONDecoder().raw_decode(text)
        except json.JSONDecodeError as exc:
            raise BuildError(f"JSON error in front matter: {exc.msg}", path, exc.lineno) \
                from None
        end = text.count("\n", 0, consumed)
    else:
        return None
    if not isinstance(meta, dict):
        raise BuildError("front matter must be a mapping of keys to values", path, 2)
    return meta, "\n".join(lines[end + 1:]), end + 2, lines[:end + 1]


def _closing(lines: list[str], markers: tuple[str, ...], path: Path) -> int:
    for i in range(1, len(lines)):
        if lines[i].rstrip() in markers:
            return i
    raise BuildError(f"front matter is not closed by a '{markers[0]}' line", path, 1)


def _yaml(block: str, path: Path) -> Any:
    try:
        found = yaml.safe_load(block)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BuildError(f"YAML error in front matter: {problem}", path,
                         mark.line + 2 if mark is not None else 1) from None
    return {} if found is None else found


def key_line(lines: list[str], key: str) -> int | None:
    """The line of ``key`` in front matter lines (YAML ``key:``, TOML ``key =``)."""
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*[:=]")
    return next((n for n, line in enumerate(lines, start=1) if pattern.match(line)), None)


def loose_date(value: Any, path: Path, line: int | None) -> date:
    """A front matter date as either engine reads it → a date or datetime."""
    if isinstance(value, date):  # datetime too
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text or \
                ":" in text else date.fromisoformat(text)
        except ValueError:
            pass
        for form in LOOSE_DATES:
            try:
                return datetime.strptime(text, form)
            except ValueError:
                continue
    raise BuildError(f"cannot read the date {value!r} (want YYYY-MM-DD, maybe with a time)",
                     path, line)


def date_from_name(name: str) -> date | None:
    """The date a ``2019-03-05-title.md`` name starts with, if any (and a real one)."""
    found = DATE_PREFIX.match(name)
    if found is None:
        return None
    try:
        return date(*map(int, found.groups()))
    except ValueError:
        return None


def line_ranges(spec: str) -> str:
    """Marked lines as Hugo (``"2 4-5"``, ``[2, "4-5"]``) or Jekyll (``"2 4"``) write
    them → Chronicle's fence option value ``2,4-5``."""
    return ",".join(re.findall(r"\d+(?:-\d+)?", spec))


def code_fence(language: str, code: str, marked: str = "", numbered: bool = False) -> str:
    """A fenced code block Chronicle highlights, with its lines marked and numbered."""
    ticks = "`" * max([3, *(len(run) + 1 for run in re.findall(r"`+", code))])
    info = " ".join([language or "text", *(["linenos"] if numbered else []),
                     *([f"hl_lines={marked}"] if marked else [])])
    return f"{ticks}{info}\n{code.strip(chr(10))}\n{ticks}"
