"""Figures: the documents' embed specs resolved against the results store, as values.

The build parses every document first (an ``embed`` token per ``chart``/``table``/
``compare`` fence, :mod:`chronicle.embed_fences`), then, between its two passes, calls
:func:`resolve_figures` once with every document's specs. It returns a
:class:`Resolution`: per document its :class:`Figure` values (the resolved spec, the
result shown and what the page needs to draw it), its warnings (a stale result, a newer
result file that is invalid) and ``updated`` (when the newest result it shows finished);
the build's stale results; and every error (an unknown experiment, subject or metric,
a result that is missing), with file and line. Nothing here writes or renders: phase 2
turns each figure into HTML through the theme's ``figures/<kind>.html`` template
(:meth:`chronicle.render.Renderer.figure`) when a page shows it.

A figure's ``digest`` covers what it shows; ``Resolution.inputs`` gives, per experiment,
a digest of everything a figure of it depends on beyond its spec (the result's content,
its staleness, the invalid files skipped, the site's subject colours): the page that
shows it records ``result:EXPERIMENT`` with that digest, so a new run re-renders exactly
the pages showing the experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from chronicle.cache import bytes_digest, code_version, digest
from chronicle.charts import assign_colours, subject_colour
from chronicle.embed_fences import EmbedSpec
from chronicle.errors import BuildError
from chronicle.lab import experiment as lab_experiment
from chronicle.lab.results import BadFile, Result, ResultStore, canonical_json
from chronicle.lab.stats import Ratio, Summary, ratio_ci, summarize
from chronicle.parallel import iter_chunks


@dataclass(frozen=True)
class StaleResult:
    experiment: str
    result_id: str
    reasons: tuple[str, ...]
    posts: tuple[Path, ...] = ()

    def __str__(self) -> str:
        return f"{self.experiment} ({self.result_id}): {'; '.join(self.reasons)}"


class Stats:
    """Bootstrap summaries and ratios, each computed once per build (they are dear), by
    the content of the result they are of."""

    def __init__(self, digest_of: Callable[[Result], str]):
        self.digest_of = digest_of
        self.known: dict[str, Any] = {}

    def summary(self, result: Result, subject: str, metric: str) -> Summary:
        key = digest("summary", self.digest_of(result), subject, metric)
        if key not in self.known:
            self.known[key] = summarize(result.values(subject, metric))
        return self.known[key]

    def ratio(self, result: Result, a: str, b: str, metric: str) -> Ratio:
        key = digest("ratio", self.digest_of(result), a, b, metric)
        if key not in self.known:
            self.known[key] = ratio_ci(result.values(a, metric), result.values(b, metric))
        return self.known[key]

    def prefetch(self, wanted: Iterable[tuple[Any, ...]], cache: Any) -> None:
        """Have every ``("summary", result, subject, metric)`` and ``("ratio", result,
        a, b, metric)`` ready: from ``cache`` (by the result's content), else computed
        here on every core and kept there. Done before the pages render, the workers
        that render them inherit the lot instead of each computing its own."""
        # a thousand comparisons ask for a few dozen ratios: one hash for each of those
        unique = {(kind, result.experiment, result.id, *names): (kind, result, *names)
                  for kind, result, *names in wanted}
        todo = {digest(kind, self.digest_of(result), *names): (kind, result, *names)
                for kind, result, *names in unique.values()}
        version = code_version()
        stored = {digest(version, key): key for key in todo if key not in self.known}
        for cached, value in cache.get_many("stats", stored).items():
            self.known[stored[cached]] = value
        missing = [key for key in todo if key not in self.known]

        def work(indices: Sequence[int]) -> list[Any]:
            found = []
            for i in indices:
                kind, result, *names = todo[missing[i]]
                found.append(getattr(self, kind)(result, *names))
            return found

        for key, value in zip(missing, iter_chunks(work, len(missing), minimum=32, small=True),
                              strict=True):
            self.known[key] = value
            cache.put("stats", digest(version, key), value)


@dataclass(frozen=True)
class Figure:
    """One embed, resolved: what its page needs to show it.

    ``result`` is None for a placeholder (``--allow-missing`` and no valid run).
    ``stale`` says why the result is stale (empty: fresh); ``skipped`` names the newer
    result files that are invalid, ``(path, problem)``; ``colours`` the site's colour
    of each subject it shows."""

    spec: EmbedSpec
    lab_url: str
    shows: str  # Lab.input_digest of its experiment: all it shows beyond its spec
    result_id: str = ""
    stale: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    colours: tuple[tuple[str, str], ...] = ()
    result: Result | None = field(default=None, compare=False, metadata={"digest": False})
    stats: Stats | None = field(default=None, compare=False, repr=False,
                                metadata={"digest": False})

    @cached_property
    def digest(self) -> str:
        from chronicle.model import fields_digest

        return fields_digest("figure", self)

    @property
    def experiment(self) -> str:
        return self.spec.experiment

    @property
    def source(self) -> str:
        return self.spec.source

    def colour(self, subject: str) -> str:
        return dict(self.colours).get(subject) or subject_colour(subject)

    def summary(self, result: Result, subject: str, metric: str) -> Summary:
        assert self.stats is not None, "a placeholder has no numbers"
        return self.stats.summary(result, subject, metric)

    def ratio(self, result: Result, a: str, b: str, metric: str) -> Ratio:
        assert self.stats is not None, "a placeholder has no numbers"
        return self.stats.ratio(result, a, b, metric)


class CachedResultStore(ResultStore):
    """The results store, each file's reading (and checking) kept in the build cache by
    the file's content: a build reads the dozens of stored runs it does not show from
    there, not through the JSON schema again."""

    def __init__(self, root: Path, cache: Any):
        super().__init__(root)
        self.cache = cache

    def _read(self, path: Path) -> Result | BadFile:
        key = digest(code_version(), str(path), self.cache.file_hash(path))
        found = self.cache.get("result", key)
        if found is None:
            found = super()._read(path)
            self.cache.put("result", key, found)
        return found


class Lab:
    """The results store as one build's figures and lab pages see it: the shown result
    of each experiment, its staleness, the site's subject colours, the lab URLs."""

    def __init__(self, root: Path, store: ResultStore,
                 scripts: Mapping[str, lab_experiment.Experiment], base_path: str = "/"):
        self.root = Path(root)
        self.store = store
        self.scripts = dict(scripts)
        self.base_path = "/" + base_path.strip("/") + "/" if base_path.strip("/") else "/"
        self.stats = Stats(self.result_digest)
        self._stale: dict[str, tuple[str, ...]] = {}
        self._digests: dict[tuple[str, str], str] = {}
        self._names: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        self._common: dict[tuple[str, str], dict[str, Any]] = {}
        self._inputs: dict[str, str] = {}

    @classmethod
    def of_site(cls, root: Path, base_path: str = "/", cache: Any = None) -> Lab:
        """The lab of the site at ``root``; with a build ``cache``, each result file is
        read and checked once, then taken from the cache while its bytes stay the same."""
        from chronicle.paths import SitePaths

        folder = SitePaths(root).results
        store = CachedResultStore(folder, cache) if cache is not None else ResultStore(folder)
        return cls(root, store, {e.name: e for e in lab_experiment.discover(root)}, base_path)

    def input_patterns(self) -> tuple[str, ...]:
        """The files the scripts declare as inputs (globs under the site root): their
        content decides what is stale, and they may lie outside ``experiments/``."""
        return tuple(sorted({p for script in self.scripts.values() for p in script.inputs}))

    def experiments(self) -> list[str]:
        """Every experiment a post may name: discovered scripts and stored results."""
        return sorted(set(self.scripts) | set(self.store.experiments()))

    @cached_property
    def colours(self) -> dict[str, str]:
        """Each subject's colour on every page of this site (see charts.assign_colours)."""
        subjects: set[str] = set()
        for name in self.store.experiments():
            result = self.store.shown(name)
            if result is not None:
                subjects.update(measured_or_declared(result))
        return assign_colours(subjects)

    def colour(self, subject: str) -> str:
        return self.colours.get(subject) or subject_colour(subject)

    def lab_url(self, experiment: str) -> str:
        return f"{self.base_path}lab/{experiment}/"

    def staleness(self, result: Result) -> tuple[str, ...]:
        """Why ``result`` is stale: its script, inputs or params changed (never the
        environment: a site built on another machine must not call every result stale)."""
        if result.id not in self._stale:
            script = self.scripts.get(result.experiment)
            self._stale[result.id] = (
                ("its experiment script is gone",) if script is None
                else tuple(lab_experiment.staleness(script, result, include_environment=False)))
        return self._stale[result.id]

    def skipped(self, result: Result) -> tuple[tuple[str, str], ...]:
        """Invalid result files newer than ``result``: the run shown instead of them."""
        return tuple((str(self.relative(b.path)), b.summary)
                     for b in self.store.bad_files(result.experiment, newer_than=result))

    def relative(self, path: Path) -> Path:
        return path.relative_to(self.root) if path.is_relative_to(self.root) else path

    def figure(self, spec: EmbedSpec, result: Result) -> Figure:
        subjects = {*spec.subjects, *(s for s in (spec.left, spec.right) if s)}
        return Figure(spec=spec, colours=tuple((s, self.colour(s)) for s in sorted(subjects)),
                      result=result, stats=self.stats, shows=self.input_digest(spec.source),
                      **self._shown(result))

    def _shown(self, result: Result) -> dict[str, Any]:
        """What every figure of ``result`` has in common, found once per result."""
        key = (result.experiment, result.id)
        if key not in self._common:
            self._common[key] = dict(
                lab_url=self.lab_url(result.experiment), result_id=result.id,
                stale=self.staleness(result),
                skipped=self.skipped(result))
        return self._common[key]

    def names(self, result: Result) -> tuple[list[str], list[str]]:
        """The result's metrics and subjects (measured or declared), found once."""
        key = (result.experiment, result.id)
        if key not in self._names:
            self._names[key] = (result.metrics, measured_or_declared(result))
        return self._names[key]

    def result_digest(self, result: Result) -> str:
        key = (result.experiment, result.id)
        if key not in self._digests:
            self._digests[key] = bytes_digest(canonical_json(result.to_json()))
        return self._digests[key]

    def prefetch(self, figures: Iterable[Figure], cache: Any) -> None:
        """Every number the figures and the lab pages show, ready before pages render:
        each shown result's summaries, and both ratios of each comparison."""
        wanted: list[tuple[Any, ...]] = []
        for name in self.store.experiments():
            result = self.store.shown(name)
            if result is not None:
                wanted += [("summary", result, s, m) for s in result.subjects
                           for m in result.metrics if result.values(s, m)]
        for figure in figures:
            spec, result = figure.spec, figure.result
            if result is None or spec.fence != "compare":
                continue
            for metric in spec.metrics:
                if result.values(spec.left, metric) and result.values(spec.right, metric):
                    wanted += [("ratio", result, spec.right, spec.left, metric),
                               ("ratio", result, spec.left, spec.right, metric)]
        self.stats.prefetch(wanted, cache)

    def input_digest(self, source: str) -> str:
        """What every figure drawing from ``source`` (``EXPERIMENT`` or
        ``EXPERIMENT@HOST``, :attr:`EmbedSpec.source`) shows beyond its spec, hashed."""
        if source not in self._inputs:
            experiment, _, host = source.partition("@")
            result = self.store.shown(experiment, host=host or None)
            if result is None:
                bad = self.store.bad_files(experiment)
                found = digest("missing", *(f"{b.path}:{b.summary}" for b in bad))
            else:
                found = digest(self.result_digest(result), *self.staleness(result),
                               *(f"{p}:{s}" for p, s in self.skipped(result)),
                               *(f"{s}={c}" for s, c in sorted(self.colours.items())),
                               self.base_path)
            self._inputs[source] = found
        return self._inputs[source]


@dataclass(frozen=True)
class Resolution:
    """What :func:`resolve_figures` found, by document source."""

    figures: dict[Path, tuple[Figure, ...]]
    warnings: dict[Path, tuple[str, ...]]
    updated: dict[Path, datetime]
    stale: tuple[StaleResult, ...]
    errors: tuple[BuildError, ...]
    inputs: dict[str, str]  # "result:SOURCE" → Lab.input_digest(SOURCE), EmbedSpec.source


def resolve_figures(specs: Mapping[Path, Sequence[EmbedSpec]], lab: Lab,
                    allow_missing: bool = False) -> Resolution:
    """Every document's specs checked against the store and made into figures."""
    figures: dict[Path, tuple[Figure, ...]] = {}
    warnings: dict[Path, tuple[str, ...]] = {}
    updated: dict[Path, datetime] = {}
    errors: list[BuildError] = []
    shown_by: dict[tuple[str, str], set[Path]] = {}  # (experiment, host) → documents
    known = lab.experiments()
    for path, doc_specs in specs.items():
        made: list[Figure] = []
        used: dict[str, Result] = {}
        placeholders_for_bad: dict[str, Any] = {}
        for spec in doc_specs:
            if spec.experiment not in known:
                errors.append(BuildError(f"unknown experiment {spec.experiment!r} (known: "
                                         f"{', '.join(known) or 'none yet'})", path, spec.line))
                continue
            result = lab.store.shown(spec.experiment, host=spec.host or None)
            if result is None and spec.host and not allow_missing:
                hosts = ", ".join(lab.store.hosts(spec.experiment)) or "none"
                on = "" if spec.host == "local" else f"--on {spec.host} "
                errors.append(BuildError(
                    f"experiment {spec.experiment!r} has no successful run from host "
                    f"{spec.host!r} (hosts with runs: {hosts}): run `chronicle lab run "
                    f"{on}{spec.experiment}`, or build with --allow-missing for a "
                    "placeholder", path, spec.line_of("host")))
                continue
            if result is None:
                bad = lab.store.bad_files(spec.experiment)
                if not allow_missing:
                    why = (f" ({lab.relative(bad[-1].path)} is not a valid result: "
                           f"{bad[-1].summary})" if bad else "")
                    errors.append(BuildError(
                        f"experiment {spec.experiment!r} has no successful run yet{why}: run "
                        f"`chronicle lab run {spec.experiment}`, or build with "
                        "--allow-missing for a placeholder", path, spec.line))
                    continue
                if bad:
                    placeholders_for_bad[spec.experiment] = bad[-1]
                made.append(Figure(spec=spec, lab_url=lab.lab_url(spec.experiment),
                                   shows=lab.input_digest(spec.source)))
                continue
            try:
                spec = resolve(spec, result, path, lab.names(result))
            except BuildError as exc:
                errors.append(exc)
                continue
            # one post may show an experiment from two hosts: each its own result to watch
            used[f"{spec.experiment} on {spec.host}" if spec.host else spec.experiment] = result
            shown_by.setdefault((spec.experiment, spec.host), set()).add(path)
            made.append(lab.figure(spec, result))
        figures[path] = tuple(made)
        warnings[path] = tuple(_warnings(lab, path, used, placeholders_for_bad))
        times = [t for t in (_parse_time(r.finished or r.started) for r in used.values()) if t]
        if times:
            updated[path] = max(times)
    stale = []
    for experiment, host in sorted(shown_by):
        result = lab.store.shown(experiment, host=host or None)
        if result is not None and lab.staleness(result):
            stale.append(StaleResult(experiment, result.id, lab.staleness(result),
                                     tuple(sorted(shown_by[experiment, host]))))
    sources = sorted({f.source for made in figures.values() for f in made})
    return Resolution(figures=figures, warnings=warnings, updated=updated, stale=tuple(stale),
                      errors=tuple(errors),
                      inputs={f"result:{s}": lab.input_digest(s) for s in sources})


def _warnings(lab: Lab, path: Path, used: dict[str, Result],
              placeholders_for_bad: dict[str, Any]) -> list[str]:
    """One per stale result the document shows, per invalid file skipped, per placeholder
    standing for a bad file: listed by the build, fatal with --strict."""
    found = []
    for name, result in sorted(used.items()):
        reasons = lab.staleness(result)
        if reasons:
            found.append(f"{path}: shows a stale result of {name} ({result.id}): "
                         f"{'; '.join(reasons)}")
        for bad_path, problem in lab.skipped(result):
            found.append(f"{path}: {bad_path} is not a valid result ({problem}); showing the "
                         f"run before it, {result.id}")
    for name, bad in sorted(placeholders_for_bad.items()):
        found.append(f"{path}: {lab.relative(bad.path)} is not a valid result ({bad.summary}); "
                     f"{name} has no valid run: a placeholder shown")
    return found


def measured_or_declared(result: Result) -> list[str]:
    """Subjects with samples, then those the script declared but could not measure."""
    declared = sorted((result.provenance.get("subjects") or {}).keys())
    return result.subjects + [s for s in declared if s not in result.subjects]


def resolve(spec: EmbedSpec, result: Result, path: Path,
            names: tuple[list[str], list[str]] | None = None) -> EmbedSpec:
    """Check every name against ``result`` and fill in the defaults it implies
    (``names``: the result's metrics and subjects, when known)."""
    metrics, subjects = names or (result.metrics, measured_or_declared(result))

    def check(name: str, valid: list[str], what: str, key: str) -> None:
        if name not in valid:
            raise BuildError(f"unknown {what} {name!r} in {result.experiment} (known: "
                             f"{', '.join(valid) or 'none'})", path, spec.line_of(key))

    for metric in spec.metrics:
        check(metric, metrics, "metric", "metrics" if "metrics" in spec.key_lines else "metric")
    if spec.x:
        check(spec.x, metrics, "metric", "x")
    for subject in spec.subjects:
        check(subject, subjects, "subject", "subjects")
    for side in ("left", "right"):
        if getattr(spec, side):
            check(getattr(spec, side), subjects, "subject", side)
    if spec.metrics and spec.subjects:
        return spec
    return replace(spec, metrics=spec.metrics or tuple(metrics),
                   subjects=spec.subjects or tuple(subjects))


class _NoCharts:
    """Charts as empty ``<svg>`` elements: a figure's text without drawing anything."""

    def svg(self, chart: Any) -> str:
        return "<svg></svg>"


NO_CHARTS: Any = _NoCharts()


def _parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
