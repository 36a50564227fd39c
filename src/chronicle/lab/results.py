"""The results store: one canonical JSON file per run, the only bridge between the halves.

Layout: ``experiments/results/<experiment>/<UTC time>-<key prefix>.json``. Files are
canonical (sorted keys, two-space indent, LF, a final newline) so that the same run
always serialises to the same bytes and diffs in review stay small.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chronicle.errors import LabError

STATUSES = ("ok", "failed", "cancelled")
SAMPLE_COLUMNS = ("subject", "metric", "value", "unit", "run", "phase", "warmup")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Sample:
    """One measurement exactly as the experiment script printed it."""

    subject: str
    metric: str
    value: float
    unit: str
    run: int
    phase: str | None = None
    warmup: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "subject": self.subject,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "run": self.run,
        }
        if self.phase is not None:
            data["phase"] = self.phase
        if self.warmup:
            data["warmup"] = True
        if self.meta:
            data["meta"] = self.meta
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        return cls(
            subject=data["subject"],
            metric=data["metric"],
            value=float(data["value"]),
            unit=data["unit"],
            run=int(data["run"]),
            phase=data.get("phase"),
            warmup=bool(data.get("warmup", False)),
            meta=dict(data.get("meta") or {}),
        )


@dataclass(frozen=True)
class Result:
    """One run of one experiment, as stored.

    ``key_parts`` holds the hashes the cache key is made of (``script``, ``inputs``,
    ``params``, ``environment``) so staleness can say *why* a result is stale.
    ``provenance["subjects"][name]`` carries what the script reported about each subject
    (``accelerator``: ``kvm``/``tcg``, ``kvm_kind``: ``hw``/``pvm``/``none``, tool
    versions, or ``status: unsupported`` with a ``reason``).
    """

    experiment: str
    id: str
    status: str
    key: str
    key_parts: dict[str, str]
    params: dict[str, Any]
    provenance: dict[str, Any]
    samples: tuple[Sample, ...]
    quick: bool = False
    log: str = ""
    error: str | None = None
    path: Path | None = field(default=None, compare=False)

    # -- queries used by both halves -------------------------------------------------
    @property
    def measured(self) -> tuple[Sample, ...]:
        """Samples that count: warm-ups are stored but never summarised."""
        return tuple(s for s in self.samples if not s.warmup)

    @property
    def subjects(self) -> list[str]:
        return sorted({s.subject for s in self.measured})

    @property
    def metrics(self) -> list[str]:
        return sorted({s.metric for s in self.measured})

    def values(self, subject: str, metric: str) -> list[float]:
        return [s.value for s in self.measured if s.subject == subject and s.metric == metric]

    def unit(self, metric: str) -> str:
        for s in self.measured:
            if s.metric == metric:
                return s.unit
        raise KeyError(metric)

    def subject_info(self, subject: str) -> dict[str, Any]:
        return dict((self.provenance.get("subjects") or {}).get(subject) or {})

    def accelerator(self, subject: str) -> str | None:
        """``kvm``, ``tcg`` or None when the subject is not a VM (containers, baselines)."""
        return self.subject_info(subject).get("accelerator")

    def emulated(self, subject: str | None = None) -> bool:
        subjects = [subject] if subject else self.subjects
        return any(self.accelerator(s) == "tcg" for s in subjects)

    @property
    def started(self) -> str:
        return str(self.provenance.get("started", ""))

    @property
    def finished(self) -> str:
        return str(self.provenance.get("finished", ""))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "experiment": self.experiment,
            "id": self.id,
            "status": self.status,
            "key": self.key,
            "key_parts": self.key_parts,
            "params": self.params,
            "provenance": self.provenance,
            "quick": self.quick,
            "log": self.log,
            "error": self.error,
            "samples": [s.to_json() for s in self.samples],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path | None = None) -> Result:
        return cls(
            experiment=data["experiment"],
            id=data["id"],
            status=data["status"],
            key=data["key"],
            key_parts=dict(data.get("key_parts") or {}),
            params=dict(data.get("params") or {}),
            provenance=dict(data.get("provenance") or {}),
            samples=tuple(Sample.from_json(s) for s in data.get("samples", [])),
            quick=bool(data.get("quick", False)),
            log=data.get("log", ""),
            error=data.get("error"),
            path=path,
        )


def _stable(obj: Any) -> Any:
    """Floats rounded to 12 significant digits so a value prints the same everywhere."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise LabError(f"non-finite number {obj!r} cannot be stored")
        return float(f"{obj:.12g}")
    if isinstance(obj, dict):
        return {str(k): _stable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_stable(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> bytes:
    text = json.dumps(_stable(obj), sort_keys=True, indent=2, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


def samples_csv(result: Result, identified: bool = False) -> str:
    """The samples as CSV, values exact (``repr``); ``identified`` puts the experiment and
    result id first, for a file that may be read beside other results' samples."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head, lead = (["experiment", "result"], [result.experiment, result.id]) if identified \
        else ([], [])
    writer.writerow([*head, *SAMPLE_COLUMNS])
    for s in result.samples:
        writer.writerow([*lead, s.subject, s.metric, repr(s.value), s.unit, s.run, s.phase or "",
                         "true" if s.warmup else "false"])
    return out.getvalue()


def atomic_write(path: Path, data: bytes) -> None:
    """Write beside the target, fsync, then rename: a reader sees old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            # mkstemp makes 0600 files; results are shared and served, so readable by all.
            os.fchmod(fh.fileno(), 0o644)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultStore:
    """Read and write ``experiments/results/``. Reads are cached per store instance."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._runs: dict[str, list[Result]] = {}

    def experiments(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("*.json")))

    def files(self, experiment: str) -> list[Path]:
        return sorted((self.root / experiment).glob("*.json"))

    def load(self, path: Path) -> Result:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Result.from_json(data, path=path)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            line = getattr(exc, "lineno", None)
            raise LabError(f"corrupt result file: {exc}", path, line) from exc

    def runs(self, experiment: str) -> list[Result]:
        """Every stored run, oldest first (file names start with the UTC start time)."""
        if experiment not in self._runs:
            self._runs[experiment] = [self.load(p) for p in self.files(experiment)]
        return self._runs[experiment]

    def latest(self, experiment: str, status: str | Iterable[str] | None = "ok") -> Result | None:
        wanted = {status} if isinstance(status, str) else (set(status) if status else None)
        for result in reversed(self.runs(experiment)):
            if wanted is None or result.status in wanted:
                return result
        return None

    def shown(self, experiment: str) -> Result | None:
        """The run the blog shows: the newest good full run, else the newest good quick one.

        A quick smoke run (``lab run --quick``) must not push a full run's figures off
        the blog; it is shown, badged as quick, only while no full run exists.
        """
        good = [r for r in self.runs(experiment) if r.status == "ok"]
        full = [r for r in good if not r.quick]
        return (full or good)[-1] if good else None

    def path_for(self, result: Result) -> Path:
        return self.root / result.experiment / f"{result.id}.json"

    def write(self, result: Result) -> Path:
        if result.status not in STATUSES:
            raise LabError(f"unknown result status {result.status!r}")
        path = self.path_for(result)
        atomic_write(path, canonical_json(result.to_json()))
        self._runs.pop(result.experiment, None)
        return path


def result_id(started_utc: str, key: str) -> str:
    """``20261126T223000Z-1a2b3c4d``: sorts by time, names the key it was made with."""
    stamp = started_utc.replace("-", "").replace(":", "").split(".")[0].rstrip("Z") + "Z"
    return f"{stamp}-{key[:8]}"


# -- validation (``chronicle lab validate``) ---------------------------------------------

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "result.schema.json"
_CONFLICT_MARKER = re.compile(r"^(?:<{7}|>{7}|\|{7})(?: |$)|^={7}$")


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_file(path: Path, schema: dict[str, Any] | None = None) -> list[str]:
    """Problems with one stored result file; empty when it is sound.

    Told apart because they have different fixes: a merge-conflicted file needs a person,
    a truncated one came from an interrupted copy, a schema violation from a bug.
    """
    import jsonschema

    try:
        raw = path.read_bytes()
    except OSError as exc:
        return [f"unreadable: {exc.strerror}"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [f"not UTF-8 (byte {exc.start})"]
    conflicts = [
        number
        for number, line in enumerate(text.splitlines(), start=1)
        if _CONFLICT_MARKER.match(line.rstrip("\r"))
    ]
    if conflicts:
        return [f"merge conflict markers at line(s) {', '.join(map(str, conflicts[:5]))}"]
    if not text.strip():
        return ["empty file"]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            return [f"truncated: JSON ends early at line {exc.lineno}"]
        return [f"corrupt JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"]
    problems: list[str] = []
    validator = jsonschema.Draft202012Validator(schema or load_schema())
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        problems.append(f"schema: {where}: {error.message}")
    if problems:
        return problems
    if data["id"] != path.stem:
        problems.append(f"id {data['id']!r} does not match the file name")
    if data["experiment"] != path.parent.name:
        problems.append(f"experiment {data['experiment']!r} does not match its folder")
    if not text.endswith("\n"):
        problems.append("no final newline (not canonical)")
    return problems


def validate_store(root: Path) -> dict[Path, list[str]]:
    """Every result file under ``root`` that has a problem, with its problems."""
    schema = load_schema()
    found: dict[Path, list[str]] = {}
    if not Path(root).is_dir():
        return found
    for path in sorted(Path(root).glob("*/*.json")):
        problems = validate_file(path, schema)
        if problems:
            found[path] = problems
    return found
