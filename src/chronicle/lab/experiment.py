"""Experiments: discovery, the ``# /// chronicle`` block, the cache key, staleness.

An experiment is a file in ``experiments/`` (any language) carrying a TOML block in
comments, in the manner of PEP 723::

    # /// chronicle
    # title = "Spawn and reap a process"
    # tags = ["baseline"]
    # ///

A file without the block is not an experiment (helpers, guest assets, READMEs live
beside them). The cache key hashes four parts, kept separately in the result so
staleness can say *why*: the script, its declared inputs, its params and the
environment fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chronicle.errors import LabError, toml_error_line, toml_key_line
from chronicle.lab import provenance
from chronicle.lab.results import Result, ResultStore
from chronicle.paths import SitePaths

OPEN = "# /// chronicle"
CLOSE = "# ///"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
KEY_PARTS = ("script", "inputs", "params", "environment")

# Every key the block may hold, with its type check and default.
_DEFAULTS: dict[str, Any] = {
    "title": None,
    "tags": [],
    "inputs": [],
    "timeout": 600,
    "repeat": 10,
    "warmup": 1,
    "params": {},
    "env": [],
    # For `lab regressions`: the relative change below which no change is called, and
    # the metrics for which a higher value is the better one.
    "threshold": 0.05,
    "higher_is_better": [],
}


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    root: Path
    title: str
    tags: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    timeout: float = 600.0
    repeat: int = 10
    warmup: int = 1
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    env: tuple[str, ...] = ()
    threshold: float = 0.05
    higher_is_better: tuple[str, ...] = ()
    line: int = 1  # where the block opens, for messages

    @property
    def relpath(self) -> str:
        return self.path.relative_to(self.root).as_posix()


# -- the block ----------------------------------------------------------------------


def read_block(path: Path) -> tuple[str, int] | None:
    """The block's TOML text and the file line of its first TOML line, or None."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if "\0" in text[:8192]:
        return None  # binary: a guest image, not a script
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.rstrip() != OPEN:
            continue
        body: list[str] = []
        for offset, inner in enumerate(lines[index + 1 :], start=index + 2):
            stripped = inner.rstrip()
            if stripped == CLOSE:
                return "\n".join(body) + "\n", index + 2
            if stripped == "#":
                body.append("")
            elif stripped.startswith("# "):
                body.append(stripped[2:])
            else:
                raise LabError(f"line inside the chronicle block is not a comment: {inner!r}",
                               path, offset)
        raise LabError(f"`{OPEN}` block is never closed with `{CLOSE}`", path, index + 1)
    return None


def _key_line(body: str, key: str, first: int) -> int:
    line = toml_key_line(body, key)
    return first + line - 1 if line else first


def _check(key: str, value: Any) -> str | None:
    """A message when ``value`` is the wrong type for ``key``."""

    def str_list(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    if key == "title" and not isinstance(value, str):
        return "title must be a string"
    if key in ("tags", "inputs", "env", "higher_is_better") and not str_list(value):
        return f"{key} must be a list of strings"
    if key == "timeout" and (isinstance(value, bool) or not isinstance(value, int | float)
                             or value <= 0):
        return "timeout must be a positive number of seconds"
    if key == "repeat" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        return "repeat must be an integer ≥ 1"
    if key == "warmup" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        return "warmup must be an integer ≥ 0"
    if key == "threshold" and (isinstance(value, bool) or not isinstance(value, int | float)
                               or not 0 <= value < 1):
        return "threshold must be a relative change from 0 up to 1 (0.05 is 5%)"
    if key == "params" and not isinstance(value, dict):
        return "params must be a table"
    return None


def parse(path: Path, root: Path) -> Experiment | None:
    """The experiment defined by ``path``, None when it has no block; LabError when bad."""
    found = read_block(path)
    if found is None:
        return None
    body, first = found
    try:
        data = tomllib.loads(body)
    except tomllib.TOMLDecodeError as exc:
        where = toml_error_line(exc)
        line = first + where - 1 if where else first
        raise LabError(f"bad TOML in chronicle block: {exc}", path, line) from exc
    for key, value in data.items():
        if key not in _DEFAULTS:
            known = ", ".join(_DEFAULTS)
            raise LabError(f"unknown key {key!r} in chronicle block (known: {known})",
                           path, _key_line(body, key, first))
        problem = _check(key, value)
        if problem:
            raise LabError(problem, path, _key_line(body, key, first))
    name = path.stem if path.suffix else path.name
    if not NAME.match(name):
        raise LabError(f"experiment name {name!r} must be letters, digits, '.', '_' or '-'", path)
    merged = {**_DEFAULTS, **data}
    return Experiment(
        name=name,
        path=path,
        root=root,
        title=merged["title"] or name,
        tags=tuple(merged["tags"]),
        inputs=tuple(merged["inputs"]),
        timeout=float(merged["timeout"]),
        repeat=int(merged["repeat"]),
        warmup=int(merged["warmup"]),
        params=dict(merged["params"]),
        env=tuple(merged["env"]),
        threshold=float(merged["threshold"]),
        higher_is_better=tuple(merged["higher_is_better"]),
        line=first - 1,
    )


def discover(root: Path) -> list[Experiment]:
    """Every experiment in ``<root>/experiments`` (top level only), sorted by name."""
    folder = SitePaths(root).experiments
    if not folder.is_dir():
        return []
    found: dict[str, Experiment] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        experiment = parse(path, root)
        if experiment is None:
            continue
        if experiment.name in found:
            other = found[experiment.name].path.name
            raise LabError(f"two experiments named {experiment.name!r} ({other} and {path.name})",
                           path)
        found[experiment.name] = experiment
    return [found[name] for name in sorted(found)]


def select(experiments: list[Experiment], names: list[str] = (), tags: list[str] = ()
           ) -> list[Experiment]:
    """By name and/or tag; everything when neither is given. Unknown names are errors."""
    by_name = {e.name: e for e in experiments}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        valid = ", ".join(by_name) or "none: no experiments found"
        raise LabError(f"unknown experiment(s): {', '.join(unknown)} (valid: {valid})")
    if not names and not tags:
        return list(experiments)
    chosen = [by_name[n] for n in dict.fromkeys(names)]
    chosen += [e for e in experiments if set(tags) & set(e.tags) and e not in chosen]
    return chosen


# -- the cache key ------------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def guest_names(experiment: Experiment) -> list[str]:
    """The guests the experiment boots: its params' ``guest`` and ``guests``."""
    named = experiment.params.get("guest", [])
    names = [named] if isinstance(named, str) else list(named)
    more = experiment.params.get("guests", [])
    names += [more] if isinstance(more, str) else list(more)
    return [name for name in dict.fromkeys(names) if isinstance(name, str)]


def _guest_files(experiment: Experiment) -> list[Path]:
    """Each named guest's definition and the files it places: change a package or a
    page and the results go stale, like any declared input."""
    from chronicle.lab import guestdef

    files: list[Path] = []
    for name in guest_names(experiment):
        path = guestdef.definition_path(experiment.root, name)
        try:
            files += guestdef.load(path).input_files()
        except LabError:
            files.append(path)  # broken or missing: its bytes (if any) still count
    return files


def input_hashes(experiment: Experiment) -> dict[str, str]:
    """``{relative path: sha256}`` for every file the input globs match, and every file
    of the guests the params name."""
    hashes: dict[str, str] = {}
    paths = [path for pattern in experiment.inputs
             for path in sorted(experiment.root.glob(pattern))]
    for path in [*paths, *_guest_files(experiment)]:
        if path.is_file():
            hashes[path.relative_to(experiment.root).as_posix()] = _sha(path.read_bytes())
    return dict(sorted(hashes.items()))


def environment_facts(experiment: Experiment, environ: dict[str, str] | None = None
                      ) -> dict[str, Any]:
    import os

    environ = os.environ if environ is None else environ
    facts = provenance.environment_fingerprint()
    listed = {name: environ[name] for name in experiment.env if name in environ}
    if listed:
        facts = {**facts, "env": listed}
    return facts


def key_parts(experiment: Experiment, *, include_environment: bool = True,
              environment: dict[str, Any] | None = None,
              inputs: dict[str, str] | None = None) -> dict[str, str]:
    """The cache key's parts; ``environment`` and ``inputs`` when the caller has them."""
    parts = {
        "script": _sha(experiment.path.read_bytes()),
        "inputs": _sha(_canonical(inputs if inputs is not None else input_hashes(experiment))),
        "params": _sha(_canonical(experiment.params)),
    }
    if include_environment:
        facts = environment if environment is not None else environment_facts(experiment)
        parts["environment"] = _sha(_canonical(facts))
    return parts


def key_of(parts: dict[str, str]) -> str:
    return _sha("".join(f"{name}:{parts[name]}\n" for name in KEY_PARTS).encode())


# -- staleness ----------------------------------------------------------------------


def staleness(experiment: Experiment, result: Result, include_environment: bool = True
              ) -> list[str]:
    """Why ``result`` no longer matches ``experiment``; empty when it is fresh.

    Without the environment this reads only the script and its inputs (no programs are
    run), so a site build on a laptop without qemu can call it for every embed.
    """
    stored = result.key_parts
    if not stored:
        return ["result has no key parts"]
    now = key_parts(experiment, include_environment=False)
    reasons: list[str] = []
    if stored.get("script") != now["script"]:
        reasons.append("script changed")
    if stored.get("inputs") != now["inputs"]:
        old = result.provenance.get("inputs")
        if isinstance(old, dict):
            new = input_hashes(experiment)
            changed = sorted(p for p in set(old) | set(new) if old.get(p) != new.get(p))
            reasons += [f"input changed: {p}" for p in changed] or ["input changed"]
        else:
            reasons.append("input changed")
    if stored.get("params") != now["params"]:
        reasons.append("params changed")
    if include_environment:
        facts = environment_facts(experiment)
        if stored.get("environment") != _sha(_canonical(facts)):
            old = result.provenance.get("environment")
            what = sorted(k for k in set(old or {}) | set(facts)
                          if (old or {}).get(k) != facts.get(k)) if isinstance(old, dict) else []
            reasons.append("environment changed" + (f": {', '.join(what)}" if what else ""))
    return reasons


@dataclass(frozen=True)
class Freshness:
    """What ``lab list`` shows: ``fresh``, ``stale``, ``failed`` or ``never run``."""

    state: str
    reasons: tuple[str, ...] = ()
    last_run: Result | None = None


def freshness(experiment: Experiment, store: ResultStore, include_environment: bool = True,
              host: str = "local") -> Freshness:
    """The state of ``host``'s runs. Another host's environment is only known there (its
    own ``lab run --on`` judges it), so for it only the script, inputs and params count."""
    last_run = store.latest(experiment.name, status=None, host=host)
    good = store.shown(experiment.name, host=host)  # a newer quick run does not
    if last_run is None:                             # make a fresh full run stale
        return Freshness("never run")
    include_environment = include_environment and host == "local"
    if good is None or last_run.status != "ok":
        detail = last_run.error or last_run.status
        return Freshness("failed", (f"{last_run.status}: {detail}",), last_run)
    reasons = staleness(experiment, good, include_environment)
    if good.quick:
        reasons.append("quick run")
    return Freshness("stale" if reasons else "fresh", tuple(reasons), last_run)
