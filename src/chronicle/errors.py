"""The two error types, one per half. Only the CLI catches and prints them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any


class ChronicleError(Exception):
    """A user's mistake: printed as one line naming the file (and line), never a traceback.

    ``exit_status`` is what the command exits with: 1 unless a command documents
    another (``lab regressions`` keeps 1 for "a regression" and gives usage errors 2).
    """

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None,
                 *, exit_status: int = 1):
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.exit_status = exit_status

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        return f"{where}{self.message}"


class BuildError(ChronicleError):
    """The site half: config, posts, templates, embeds."""


class BuildErrors(BuildError):
    """Several independent problems found in one pass, reported together."""

    def __init__(self, errors: list[BuildError]):
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class LabError(ChronicleError):
    """The lab half: experiment blocks, runs, results, subjects."""


def read_toml(path: Path, error: type[ChronicleError], what: str = "file"
              ) -> tuple[dict[str, Any], str]:
    """A TOML file's table and its text (for messages naming a key's line); any problem
    reading it is ``error`` naming the file, and the line where tomllib gives one."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found", path) from None
    except UnicodeDecodeError:
        raise error("not valid UTF-8", path) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", path) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise error(f"TOML error: {exc}", path, toml_error_line(exc)) from None


def toml_error_line(exc: Exception) -> int | None:
    """The line tomllib names in a decode error (``… (at line 3, column 7)``), if any."""
    found = re.search(r"at line (\d+)", str(exc))
    return int(found.group(1)) if found else None


def toml_key_line(text: str, key: str) -> int | None:
    """The 1-based line where ``key = …`` or the table ``[key]`` opens in a TOML text."""
    pattern = re.compile(rf"\s*(\[\[?\s*{re.escape(key)}\s*\]\]?\s*$|{re.escape(key)}\s*=)")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None
