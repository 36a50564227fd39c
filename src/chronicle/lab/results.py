"""The results store: one canonical JSON file per run, the only bridge between the halves.

Layout: ``experiments/results/<experiment>/<UTC time>-<key prefix>.json``. Files are
canonical (sorted keys, two-space indent, LF, a final newline) so that the same run
always serialises to the same bytes and diffs in review stay small.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, get_origin, get_type_hints

from chronicle.errors import LabError
from chronicle.lab.validation import file_problems, result_problems
from chronicle.swap import atomic_write

FORMAT_VERSION = 1
_STAMP = re.compile(r"^[0-9]{8}T[0-9]{6}Z")


@dataclass(frozen=True)
class Sample:
    """One measurement exactly as the experiment script printed it.

    Its stored form is ``$defs/sample`` in ``schemas/result.schema.json``, which every line
    a script prints and every stored file is checked against: these fields, in that
    order, the ones without a default its required keys (a test holds the two alike).
    The rest is derived from the fields: the JSON (:meth:`to_json`, :meth:`from_json`),
    the CSV (:data:`SAMPLE_COLUMNS`) and ``chronicle.lab.emit``, whose parameters a test
    holds to them.
    """

    subject: str
    metric: str
    value: float
    unit: str
    run: int
    phase: str | None = None
    warmup: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Every field but the optional ones at their default: the line a script prints."""
        data = dict(vars(self))
        for name, default in _SAMPLE_OPTIONAL.items():
            if data[name] == default:
                del data[name]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sample:
        """The sample in a checked line or stored object, each value as its field's type
        (a script may print ``412`` for a value, and JSON Schema takes ``3.0`` for a run)."""
        return cls(**{name: _SAMPLE_READERS[name](value) for name, value in data.items()})


def _reader(kind: Any) -> Callable[[Any], Any]:
    """What makes a JSON value a field of type ``kind``: numbers and flags converted,
    objects copied, the rest kept."""
    if kind in (float, int, bool):
        return kind
    return dict if get_origin(kind) is dict else _same


def _same(value: Any) -> Any:
    return value


# Once, not per sample: a build reads thousands.
_SAMPLE_OPTIONAL = {f.name: f.default if f.default_factory is MISSING else f.default_factory()
                    for f in fields(Sample)
                    if f.default is not MISSING or f.default_factory is not MISSING}
_SAMPLE_READERS = {name: _reader(kind) for name, kind in get_type_hints(Sample).items()}
# meta is free-form and nested: it is in the JSON, not the CSV
SAMPLE_COLUMNS = tuple(f.name for f in fields(Sample) if f.name != "meta")


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
        return list(self._series.get((subject, metric), ()))

    @cached_property
    def _series(self) -> dict[tuple[str, str], tuple[float, ...]]:
        """Measured values by subject and metric, gathered once: a build asks for one
        result's values tens of thousands of times (every figure, every comparison)."""
        found: dict[tuple[str, str], list[float]] = {}
        for s in self.measured:
            found.setdefault((s.subject, s.metric), []).append(s.value)
        return {key: tuple(values) for key, values in found.items()}

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
    def lab_host(self) -> str:
        """The ``lab.toml`` name of the host that ran it; ``local`` for runs made before
        hosts were recorded, which were all made on the machine that stored them."""
        return str(self.provenance.get("lab_host") or "local")

    @property
    def niced_share(self) -> float | None:
        """The share of the machine's CPU time that niced (low-priority) processes took
        during the run (``provenance.load``); None for runs that did not record it."""
        return (self.provenance.get("load") or {}).get("niced")

    @property
    def started(self) -> str:
        return str(self.provenance.get("started", ""))

    @property
    def finished(self) -> str:
        return str(self.provenance.get("finished", ""))

    @property
    def day(self) -> str:
        """The UTC day the run started, ``YYYY-MM-DD`` (from its id, which begins with
        its start time, when none was recorded)."""
        return self.started[:10] or f"{self.id[:4]}-{self.id[4:6]}-{self.id[6:8]}"

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
        writer.writerow([*lead, *(_csv_cell(getattr(s, name)) for name in SAMPLE_COLUMNS)])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    """Floats exact (``repr``), booleans as JSON writes them, None as nothing."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else value


@dataclass(frozen=True)
class BadFile:
    """A stored file that is not a valid result: skipped by every reader, and said so."""

    path: Path
    problems: tuple[str, ...]
    line: int | None = None

    @property
    def id(self) -> str:
        return self.path.stem

    @property
    def summary(self) -> str:
        more = len(self.problems) - 1
        return self.problems[0] + (f" (and {more} more problem(s))" if more > 0 else "")

    def error(self) -> LabError:
        return LabError(f"not a valid result: {self.summary}", self.path, self.line)


class ResultStore:
    """Read and write ``experiments/results/``. Reads are cached per store instance.

    Every file is checked as it is loaded (:mod:`chronicle.lab.validation`); one that
    fails is left out of :meth:`runs` and listed by :meth:`bad_files`, so a broken or
    hand-edited file hides nothing but itself.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self._runs: dict[str, tuple[list[Result], list[BadFile]]] = {}

    def experiments(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("*.json")))

    def files(self, experiment: str) -> list[Path]:
        return sorted((self.root / experiment).glob("*.json"))

    def load(self, path: Path) -> Result:
        """The result in ``path``; a LabError naming the file and its first problem."""
        found = self._read(path)
        if isinstance(found, BadFile):
            raise found.error()
        return found

    def _read(self, path: Path) -> Result | BadFile:
        data, problems, line = file_problems(path)
        if problems:
            return BadFile(path, tuple(problems), line)
        return Result.from_json(data, path=path)

    def _scan(self, experiment: str) -> tuple[list[Result], list[BadFile]]:
        if experiment not in self._runs:
            found = [self._read(p) for p in self.files(experiment)]
            self._runs[experiment] = ([r for r in found if isinstance(r, Result)],
                                      [b for b in found if isinstance(b, BadFile)])
        return self._runs[experiment]

    def runs(self, experiment: str) -> list[Result]:
        """Every stored valid run, oldest first (file names start with the UTC start time)."""
        return self._scan(experiment)[0]

    def bad_files(self, experiment: str, newer_than: Result | None = None) -> list[BadFile]:
        """The experiment's files that are not valid results, oldest first; with
        ``newer_than``, only those that sort after that run: were they valid, one of them
        might be the run to show instead."""
        bad = self._scan(experiment)[1]
        if newer_than is None:
            return list(bad)
        return [b for b in bad if b.id > newer_than.id]

    def latest(self, experiment: str, status: str | Iterable[str] | None = "ok",
               host: str | None = None) -> Result | None:
        wanted = {status} if isinstance(status, str) else (set(status) if status else None)
        for result in reversed(self.runs(experiment)):
            if (wanted is None or result.status in wanted) and \
                    (host is None or result.lab_host == host):
                return result
        return None

    def hosts(self, experiment: str) -> list[str]:
        """The lab hosts with a stored run of ``experiment``, ``local`` first."""
        found = {r.lab_host for r in self.runs(experiment)}
        return sorted(found, key=lambda name: (name != "local", name))

    def shown(self, experiment: str, host: str | None = None) -> Result | None:
        """The run the blog shows: the newest good full run, else the newest good quick one.

        A quick smoke run (``lab run --quick``) must not push a full run's figures off
        the blog; it is shown, badged as quick, only while no full run exists. With
        ``host``, only that lab host's runs count.
        """
        good = [r for r in self.runs(experiment) if r.status == "ok"
                and (host is None or r.lab_host == host)]
        full = [r for r in good if not r.quick]
        return (full or good)[-1] if good else None

    def path_for(self, result: Result) -> Path:
        return self.root / result.experiment / f"{result.id}.json"

    def new_id(self, experiment: str, started_utc: str, key: str, host: str = "local"
               ) -> str:
        """A new run's id: its start time, or one second after the newest stored id when
        that is not older — a rerun within the same second, or a file dated ahead by a
        host whose clock ran fast. Ids stay unique and in order without waiting.

        A run on a named lab host ends with a hash of the key *and* the host's name:
        identical hosts running the same experiment in the same second (``lab run --on
        a,b``) must not make files of one name, which would clash when fetched or merged.
        """
        tag = key[:8] if host == "local" else \
            hashlib.sha256(f"{key}@{host}".encode()).hexdigest()[:8]
        stamp = result_id(started_utc, key)[:16]
        stored = [p.name[:16] for p in self.files(experiment) if _STAMP.match(p.name)]
        if stored and max(stored) >= stamp:
            after = datetime.strptime(max(stored), "%Y%m%dT%H%M%SZ") + timedelta(seconds=1)
            stamp = after.replace(tzinfo=UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"{stamp}-{tag}"

    def write(self, result: Result) -> Path:
        path = self.path_for(result)
        problems = result_problems(result.to_json())
        if problems:
            # only a bug of ours gets here: the runner checks what a script prints
            raise LabError(f"refusing to store an invalid result: {'; '.join(problems[:3])}",
                           path)
        atomic_write(path, canonical_json(result.to_json()))
        self._runs.pop(result.experiment, None)
        return path


def result_id(started_utc: str, key: str) -> str:
    """``20261126T223000Z-1a2b3c4d``: sorts by time, names the key it was made with."""
    stamp = started_utc.replace("-", "").replace(":", "").split(".")[0].rstrip("Z") + "Z"
    return f"{stamp}-{key[:8]}"
