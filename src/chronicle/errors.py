"""The two error types, one per half. Only the CLI catches and prints them."""

from __future__ import annotations

from pathlib import Path


class ChronicleError(Exception):
    """A user's mistake: printed as one line naming the file (and line), never a traceback."""

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line

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
