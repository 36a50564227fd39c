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

A pinned spec (``result: ID`` or ``as_of: DATE``) shows that run instead of the newest:
its dependency is named by the pin too (``result:EXPERIMENT#as_of=DATE``), and covers
its run and the id and date of the newest run when that is newer (its caption's "a newer
run exists" note), never the newest run's numbers. A pinned run is shown on purpose, so
it is neither warned about as stale nor a post's ``updated``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from chronicle import figure_cache
from chronicle.cache import bytes_digest, code_version, digest
from chronicle.charts import assign_colours, subject_colour
from chronicle.embed_fences import EmbedSpec
from chronicle.errors import BuildError
from chronicle.figure_cache import DocumentFigures
from chronicle.lab import experiment as lab_experiment
from chronicle.lab.results import BadFile, Result, ResultStore, canonical_json
from chronicle.lab.stats import Ratio, Summary, ratio_ci, summarize
from chronicle.parallel import iter_chunks
from chronicle.updates import UpdateNote, update_notes


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

    def ratio_across(self, result_a: Result, a: str, result_b: Result, b: str, metric: str
                     ) -> Ratio:
        """``a`` in ``result_a`` over ``b`` in ``result_b``: two hosts' runs side by side."""
        key = digest("ratio-across", self.digest_of(result_a), a, self.digest_of(result_b), b,
                     metric)
        if key not in self.known:
            self.known[key] = ratio_ci(result_a.values(a, metric), result_b.values(b, metric))
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
    of each subject it shows. A pinned figure (``result:``/``as_of:``) names the newest
    good run in ``newer`` (its id and date) when that is not the run it shows. A
    history's ``runs`` are the runs it draws, oldest first, ending with ``result``. A
    comparison whose sides come from two hosts' runs holds the left's here and the
    right's as ``other``, a figure of its own (its run, staleness, ``shows``)."""

    spec: EmbedSpec
    lab_url: str
    shows: str  # Lab.input_digest of each source it draws from: all it shows beyond its spec
    result_id: str = ""
    stale: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    colours: tuple[tuple[str, str], ...] = ()
    newer: tuple[str, str] = ()
    result: Result | None = field(default=None, compare=False, metadata={"digest": False})
    runs: tuple[Result, ...] = field(default=(), compare=False, metadata={"digest": False})
    other: Figure | None = None
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

    @property
    def sources(self) -> tuple[str, ...]:
        return self.spec.sources

    def run_of(self, side: str) -> Result | None:
        """The run a comparison's ``left`` or ``right`` side shows."""
        return self.other.result if side == "right" and self.other is not None else self.result

    def subject_runs(self) -> list[tuple[str, Result]]:
        """Each subject shown and the run it is shown from."""
        if self.spec.fence == "compare":
            return [(subject, run) for side, subject in (("left", self.spec.left),
                                                         ("right", self.spec.right))
                    if (run := self.run_of(side)) is not None]
        return [(subject, self.result) for subject in self.spec.subjects
                if self.result is not None]

    def colour(self, subject: str) -> str:
        return dict(self.colours).get(subject) or subject_colour(subject)

    def summary(self, result: Result, subject: str, metric: str) -> Summary:
        assert self.stats is not None, "a placeholder has no numbers"
        return self.stats.summary(result, subject, metric)

    def ratio(self, result: Result, a: str, b: str, metric: str) -> Ratio:
        assert self.stats is not None, "a placeholder has no numbers"
        return self.stats.ratio(result, a, b, metric)

    def ratio_across(self, result_a: Result, a: str, result_b: Result, b: str, metric: str
                     ) -> Ratio:
        assert self.stats is not None, "a placeholder has no numbers"
        return self.stats.ratio_across(result_a, a, result_b, b, metric)


class CachedResultStore(ResultStore):
    """The results store, each file's reading (and checking) kept in the build cache by
    the file's content: a build reads the dozens of stored runs it does not show from
    there, not through the JSON schema again."""

    def __init__(self, root: Path, cache: Any):
        super().__init__(root)
        self.cache = cache
        # each run's content digest (Lab.result_digest), kept with its reading: making
        # it again is a canonical JSON of every sample, for every run shown, every build.
        # By the run read (held here, so its id is not reused while this store lives)
        self.digests: dict[int, tuple[Result, str]] = {}

    def _read(self, path: Path) -> Result | BadFile:
        key = digest(code_version(), str(path), self.cache.file_hash(path))
        found = self.cache.get("result", key)
        if found is None:
            read = super()._read(path)
            found = (read, content_digest(read) if isinstance(read, Result) else "")
            self.cache.put("result", key, found)
        read, made = found
        if made:
            self.digests[id(read)] = (read, made)
        return read


def content_digest(result: Result) -> str:
    """A run's content, hashed: what its numbers and every figure of it rest on."""
    return bytes_digest(canonical_json(result.to_json()))


class Lab:
    """The results store as one build's figures and lab pages see it: the shown result
    of each experiment, its staleness, the site's subject colours, the lab URLs."""

    def __init__(self, root: Path, store: ResultStore,
                 scripts: Mapping[str, lab_experiment.Experiment], base_path: str = "/",
                 cache: Any = None):
        self.root = Path(root)
        self.store = store
        self.cache = cache  # the build cache, if any: where dear numbers are kept
        # chronicle.updates' decisions, by content, and each shown run's line
        self.decisions: dict[str, Any] = {}
        self.timelines: dict[Any, Any] = {}
        self.scripts = dict(scripts)
        self.base_path = "/" + base_path.strip("/") + "/" if base_path.strip("/") else "/"
        self.stats = Stats(self.result_digest)
        self._stale: dict[str, tuple[str, ...]] = {}
        self._digests: dict[tuple[str, str], str] = {}
        self._names: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        self._common: dict[tuple[str, str], dict[str, Any]] = {}
        self._inputs: dict[str, str] = {}
        # the runs each experiment shows, pins pick from or draws over time: asked by
        # every figure, the lab pages and the update notes, found once a build
        self._shown_runs: dict[tuple[str, str], Result | None] = {}
        self._ok_runs: dict[tuple[str, str], list[Result]] = {}
        self._history: dict[tuple[str, str, str], list[Result]] = {}

    @classmethod
    def of_site(cls, root: Path, base_path: str = "/", cache: Any = None) -> Lab:
        """The lab of the site at ``root``; with a build ``cache``, each result file is
        read and checked once, then taken from the cache while its bytes stay the same."""
        from chronicle.paths import SitePaths

        folder = SitePaths(root).results
        store = CachedResultStore(folder, cache) if cache is not None else ResultStore(folder)
        return cls(root, store, {e.name: e for e in lab_experiment.discover(root)}, base_path,
                   cache)

    def input_patterns(self) -> tuple[str, ...]:
        """The files the scripts declare as inputs (globs under the site root): their
        content decides what is stale, and they may lie outside ``experiments/``."""
        return tuple(sorted({p for script in self.scripts.values() for p in script.inputs}))

    def experiments(self) -> list[str]:
        """Every experiment a post may name: discovered scripts and stored results."""
        return sorted(set(self.scripts) | set(self.store.experiments()))

    def shown(self, experiment: str, host: str = "") -> Result | None:
        """The run the blog shows (from ``host`` if named): :meth:`ResultStore.shown`."""
        key = (experiment, host)
        if key not in self._shown_runs:
            self._shown_runs[key] = self.store.shown(experiment, host=host or None)
        return self._shown_runs[key]

    @cached_property
    def colours(self) -> dict[str, str]:
        """Each subject's colour on every page of this site (see charts.assign_colours)."""
        subjects: set[str] = set()
        for name in self.store.experiments():
            result = self.shown(name)
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

    def figure(self, spec: EmbedSpec, result: Result, runs: Sequence[Result] = (),
               host: str | None = None, other: Figure | None = None) -> Figure:
        """The figure of ``spec`` showing ``result`` (from ``host``, when not the
        spec's: a side of a comparison of two hosts)."""
        host = spec.host if host is None else host
        subjects = {*spec.subjects, *(s for s in (spec.left, spec.right) if s)}
        shown = self._shown(result)
        if spec.pin:
            # a pin shows an older run on purpose: what is newer is said, not badged
            newer = self.newer(result, host)
            shown = dict(shown, stale=(), skipped=(),
                         newer=(newer.id, newer.day) if newer else ())
        shows = self.input_digest(spec.source_on(host))
        return Figure(spec=spec, colours=tuple((s, self.colour(s)) for s in sorted(subjects)),
                      result=result, stats=self.stats,
                      shows=digest(shows, other.shows) if other is not None else shows,
                      runs=tuple(runs), other=other, **shown)

    def ok_runs(self, experiment: str, host: str = "") -> list[Result]:
        """The experiment's runs with status ok (from ``host`` if named), quick ones
        too, oldest first: what a pin may name (a list to read, not to change)."""
        key = (experiment, host)
        if key not in self._ok_runs:
            self._ok_runs[key] = [r for r in self.store.runs(experiment)
                                  if r.status == "ok" and (not host or r.lab_host == host)]
        return self._ok_runs[key]

    def newer(self, result: Result, host: str = "") -> Result | None:
        """The run the blog shows unpinned, when it is newer than ``result``."""
        newest = self.shown(result.experiment, host)
        return newest if newest is not None and newest.id > result.id else None

    def pinned(self, experiment: str, host: str, pin: str) -> Result | None:
        """The good run a pin (:attr:`EmbedSpec.pin`) picks, or None when none fits."""
        key, _, value = pin.partition("=")
        good = self.ok_runs(experiment, host)
        if key == "result":
            return next((r for r in good if r.id == value), None)
        before = [r for r in good if r.day <= value]
        full = [r for r in before if not r.quick]
        return (full or before)[-1] if before else None

    def history(self, experiment: str, host: str, until: Result | None = None
                ) -> list[Result]:
        """The runs a history draws (:func:`chronicle.lab.history.good_runs`: good and
        full), oldest first, up to ``until`` when the figure is pinned (a list to read,
        not to change)."""
        from chronicle.lab.history import good_runs

        key = (experiment, host, until.id if until is not None else "")
        if key not in self._history:
            self._history[key] = [r for r in good_runs(self.ok_runs(experiment, host))
                                  if until is None or r.id <= until.id]
        return self._history[key]

    def history_names(self, runs: Sequence[Result]) -> tuple[list[str], list[str]]:
        """The metrics and subjects any of ``runs`` measured."""
        metrics = sorted({m for r in runs for m in self.names(r)[0]})
        subjects = sorted({s for r in runs for s in self.names(r)[1]})
        return metrics, subjects

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
            known = self.store.digests.get(id(result)) \
                if isinstance(self.store, CachedResultStore) else None
            self._digests[key] = known[1] if known and known[0] is result \
                else content_digest(result)
        return self._digests[key]

    def prefetch(self, figures: Iterable[Figure], cache: Any) -> None:
        """Every number the figures and the lab pages show, ready before pages render:
        each shown result's summaries and those of the runs its lab page's history
        draws, and both ratios of each comparison."""
        wanted: list[tuple[Any, ...]] = []
        for name in self.store.experiments():
            result = self.shown(name)
            runs = self.history(name, "")
            for run in {r.id: r for r in (*runs, *([result] if result else []))}.values():
                wanted += [("summary", run, s, m) for s in run.subjects
                           for m in run.metrics if run.values(s, m)]
        seen: set[tuple[Any, ...]] = set()
        for figure in figures:
            spec, result = figure.spec, figure.result
            # a blog shows the same figure in many posts, each on its own line: the
            # numbers of each once (a thousand histories of thirty runs were ~0.2 s)
            asks = (_unplaced(spec), figure.result_id,
                    figure.other.result_id if figure.other is not None else "")
            if asks in seen:
                continue
            seen.add(asks)
            # a pinned run or a history's runs: not among the shown runs above
            for run in figure.runs or ((result,) if spec.pin and result else ()):
                wanted += [("summary", run, s, m) for s in spec.subjects for m in spec.metrics
                           if run.values(s, m)]
            if figure.other is not None and figure.other.result is not None:
                run = figure.other.result
                wanted += [("summary", run, spec.right, m) for m in spec.metrics
                           if run.values(spec.right, m)]
            # two hosts' runs: their ratios are few, and found as the page renders
            if result is None or spec.fence != "compare" or spec.split:
                continue
            for metric in spec.metrics:
                if result.values(spec.left, metric) and result.values(spec.right, metric):
                    wanted += [("ratio", result, spec.right, spec.left, metric),
                               ("ratio", result, spec.left, spec.right, metric)]
        self.stats.prefetch(wanted, cache)

    def input_digest(self, source: str) -> str:
        """What every figure drawing from ``source`` (``EXPERIMENT`` or
        ``EXPERIMENT@HOST``, then ``#history`` or a pin, :attr:`EmbedSpec.source`) shows
        beyond its spec, hashed. A pinned figure depends on its run and on the id and
        date of the newest run when newer, never on that run's content."""
        if source not in self._inputs:
            where, *extras = source.split("#")
            experiment, _, host = where.partition("@")
            pin = next((e for e in extras if "=" in e), "")
            result = self.pinned(experiment, host, pin) if pin else \
                self.shown(experiment, host)
            if result is not None and (pin or "history" in extras):
                newer = self.newer(result, host) if pin else None
                runs = self.history(experiment, host, result) if "history" in extras \
                    else [result]
                found = digest("pinned" if pin else "history",
                               *(self.result_digest(r) for r in runs),
                               *((newer.id, newer.day) if newer else ()),
                               *(() if pin else self.staleness(result)),
                               *(() if pin else (f"{p}:{s}" for p, s in self.skipped(result))),
                               *(f"{s}={c}" for s, c in sorted(self.colours.items())),
                               self.base_path)
            elif result is None:
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
    updated: dict[Path, datetime]  # when the newest of a post's update notes was made
    stale: tuple[StaleResult, ...]
    errors: tuple[BuildError, ...]
    inputs: dict[str, str]  # "result:SOURCE" → Lab.input_digest(SOURCE), EmbedSpec.source
    notes: dict[Path, tuple[UpdateNote, ...]] = field(default_factory=dict)


def resolve_figures(specs: Mapping[Path, Sequence[EmbedSpec]], lab: Lab,
                    allow_missing: bool = False,
                    posted: Mapping[Path, datetime] | None = None,
                    names: Mapping[Path, str] | None = None) -> Resolution:
    """Every document's specs checked against the store and made into figures; for a
    post (``posted``: each post's date), its update notes (:mod:`chronicle.updates`).

    With ``names`` (a digest of each document's specs and path: its body's) and a lab
    with a build cache, a document's figures are kept there and read back while
    nothing they were made from changed (:mod:`chronicle.figure_cache`)."""
    posted = posted or {}
    known = lab.experiments()
    keys: dict[Path, str] = {}
    if names is not None and lab.cache is not None:
        made_keys = figure_cache.Keys(lab, known, allow_missing)
        keys = {path: made_keys.of(names[path], doc_specs, posted.get(path))
                for path, doc_specs in specs.items()}
    stored = figure_cache.load(lab.cache, keys, lab) if keys else {}
    resolver = _Resolver(lab, known, allow_missing)
    by_document: dict[Path, DocumentFigures] = {}
    errors: list[BuildError] = []
    for path, doc_specs in specs.items():
        found = stored.get(path)
        if found is None:
            found, doc_errors = resolver.document(path, doc_specs, posted.get(path))
            errors += doc_errors
            if keys and not doc_errors:
                figure_cache.store(lab.cache, keys[path], found, lab)
        by_document[path] = found
    shown_by: dict[tuple[str, str], set[Path]] = {}  # (experiment, host) → documents
    for path, found in by_document.items():
        for shown in found.shown:
            shown_by.setdefault(shown, set()).add(path)
    stale = []
    for experiment, host in sorted(shown_by):
        result = lab.shown(experiment, host)
        if result is not None and lab.staleness(result):
            stale.append(StaleResult(experiment, result.id, lab.staleness(result),
                                     tuple(sorted(shown_by[experiment, host]))))
    sources = sorted({s for found in by_document.values() for s in found.sources})
    return Resolution(figures={p: found.figures for p, found in by_document.items()},
                      warnings={p: found.warnings for p, found in by_document.items()},
                      updated={p: found.updated for p, found in by_document.items()
                               if found.updated is not None},
                      stale=tuple(stale), errors=tuple(errors),
                      inputs={f"result:{s}": lab.input_digest(s) for s in sources},
                      notes={p: found.notes for p, found in by_document.items() if found.notes})


class _Resolver:
    """Documents' specs made into figures, each spec resolved once however many fences
    ask for it: a blog shows the same figure in many posts. It is resolved as it would
    be on any line, then put on each line it stands on (its id names the line); an
    error is not kept, so each fence reports it at its own line."""

    def __init__(self, lab: Lab, known: Sequence[str], allow_missing: bool):
        self.lab, self.known, self.allow_missing = lab, known, allow_missing
        self.anywhere: dict[tuple[Any, ...], tuple[Figure, tuple[Result | None, ...]]] = {}
        self.resolved: dict[EmbedSpec, tuple[Figure, tuple[Result | None, ...]]] = {}

    def document(self, path: Path, specs: Sequence[EmbedSpec], posted: datetime | None
                 ) -> tuple[DocumentFigures, list[BuildError]]:
        """The document's figures, warnings and notes, and its errors."""
        lab = self.lab
        made: list[Figure] = []
        used: dict[str, Result] = {}
        shown: dict[tuple[str, str], None] = {}
        placeholders_for_bad: dict[str, Any] = {}
        errors: list[BuildError] = []
        for spec in specs:
            if spec.experiment not in self.known:
                errors.append(BuildError(
                    f"unknown experiment {spec.experiment!r} (known: "
                    f"{', '.join(self.known) or 'none yet'})", path, spec.line))
                continue
            try:
                figure, found = self.spec(spec, path)
            except BuildError as exc:
                errors.append(exc)
                continue
            if figure.result is None:
                bad = lab.store.bad_files(spec.experiment)
                if bad:
                    placeholders_for_bad[spec.experiment] = bad[-1]
            elif not spec.pin:
                # one post may show an experiment from two hosts: each its own result
                for host, run in zip(dict.fromkeys(spec.hosts), found, strict=True):
                    used[f"{spec.experiment} on {host}" if host else spec.experiment] = run
                    shown[spec.experiment, host] = None
            made.append(figure)
        notes: tuple[UpdateNote, ...] = ()
        changed = None
        if posted is not None:
            # a post is updated when a number it shows moved, not whenever a run is newer
            notes, changed = update_notes(made, posted, lab)
        return DocumentFigures(
            tuple(made), tuple(_warnings(lab, path, used, placeholders_for_bad)), notes,
            changed, tuple(shown), tuple(dict.fromkeys(s for f in made for s in f.sources))
        ), errors

    def spec(self, spec: EmbedSpec, path: Path) -> tuple[Figure, tuple[Result | None, ...]]:
        if spec in self.resolved:
            return self.resolved[spec]
        unplaced = _unplaced(spec)
        if unplaced in self.anywhere:
            figure, found = self.anywhere[unplaced]
            figure = _placed(figure, spec)
        else:
            figure, found = resolve_one(spec, self.lab, path, self.allow_missing)
            self.anywhere[unplaced] = figure, found
        self.resolved[spec] = figure, found
        return figure, found


def resolve_one(spec: EmbedSpec, lab: Lab, path: Path, allow_missing: bool
                ) -> tuple[Figure, tuple[Result | None, ...]]:
    """``spec``'s figure and the run each of its hosts shows (None for a placeholder's);
    a BuildError at the fence's line when it cannot be shown."""
    # a comparison of two hosts: each side its own host's run, left first
    found = tuple(shown_run(lab, spec, host, path, allow_missing)
                  for host in dict.fromkeys(spec.hosts))
    result = None if None in found else found[0]
    if result is None:
        shows = [lab.input_digest(source) for source in spec.sources]
        return Figure(spec=spec, lab_url=lab.lab_url(spec.experiment),
                      shows=shows[0] if len(shows) == 1 else digest(*shows)), found
    history = spec.kind == "history"
    # quick runs are shown while no full one exists, but a history leaves them out
    runs = lab.history(spec.experiment, spec.host, result) if history else []
    spec = resolve(spec, result, path,
                   lab.history_names(runs) if runs else lab.names(result),
                   lab.names(found[1])[1] if spec.split else None)
    if history:
        check_history(spec, runs, path)
    other = lab.figure(spec, found[1], host=spec.hosts[1]) if spec.split else None
    figure = lab.figure(spec, result, runs, host=spec.hosts[0], other=other)
    if not history:  # a history draws a line per host and accelerator, each named
        check_mix(figure, path)
    return figure, found


_PLACES = ("line", "key_lines")  # where a fence stands, not what it asks for
_ASKS = tuple(f.name for f in fields(EmbedSpec) if f.name not in _PLACES)


def _unplaced(spec: EmbedSpec) -> tuple[Any, ...]:
    """What a spec asks for, wherever it stands."""
    return tuple(getattr(spec, name) for name in _ASKS)


def _placed(figure: Figure, spec: EmbedSpec) -> Figure:
    """``figure``, resolved from a spec asking what ``spec`` asks, on ``spec``'s line."""
    def moved(shown: Figure) -> Figure:
        return replace(shown, spec=replace(shown.spec, line=spec.line,
                                           key_lines=spec.key_lines))

    placed = moved(figure)
    return placed if figure.other is None else replace(placed, other=moved(figure.other))


def shown_run(lab: Lab, spec: EmbedSpec, host: str, path: Path, allow_missing: bool
              ) -> Result | None:
    """The run ``spec`` shows from lab ``host`` (empty: any): the one its pin picks, else
    the newest good one; None for a placeholder (``allow_missing``); an error at the
    fence's line when there is none."""
    if spec.pin:
        return pinned_run(lab, spec, path, host)
    result = lab.shown(spec.experiment, host)
    if result is not None or allow_missing:
        return result
    if host:
        hosts = ", ".join(lab.store.hosts(spec.experiment)) or "none"
        on = "" if host == "local" else f"--on {host} "
        key = next((side for side in ("left", "right")
                    if getattr(spec, f"{side}_host") == host), "host")
        raise BuildError(
            f"experiment {spec.experiment!r} has no successful run from host "
            f"{host!r} (hosts with runs: {hosts}): run `chronicle lab run "
            f"{on}{spec.experiment}`, or build with --allow-missing for a "
            "placeholder", path, spec.line_of(key))
    bad = lab.store.bad_files(spec.experiment)
    why = (f" ({lab.relative(bad[-1].path)} is not a valid result: "
           f"{bad[-1].summary})" if bad else "")
    raise BuildError(
        f"experiment {spec.experiment!r} has no successful run yet{why}: run "
        f"`chronicle lab run {spec.experiment}`, or build with "
        "--allow-missing for a placeholder", path, spec.line)


def check_mix(figure: Figure, path: Path) -> None:
    """A figure shows one host and one accelerator unless its fence's ``mix`` allows
    more: a number from a KVM host beside one from TCG differs for reasons the reader
    cannot see in the subjects' names."""
    spec = figure.spec
    shown = figure.subject_runs()
    hosts = sorted({run.lab_host for _, run in shown})
    by_accelerator: dict[str, list[str]] = {}
    for subject, run in shown:
        accelerator = run.accelerator(subject)
        if accelerator in ("kvm", "tcg"):
            label = f"{subject} on {run.lab_host}" if len(hosts) > 1 else subject
            by_accelerator.setdefault(accelerator, []).append(label)
    mixed = {}
    if len(hosts) > 1:
        mixed["hosts"] = "; ".join(f"{subject} on {run.lab_host}" for subject, run in shown)
    if len(by_accelerator) > 1:
        mixed["accelerators"] = "; ".join(
            f"{', '.join(found)} under {accelerator.upper()}"
            for accelerator, found in sorted(by_accelerator.items()))
    unsaid = [what for what in mixed if what not in spec.mix]
    if not unsaid:
        return
    key = f"mix: [{', '.join(mixed)}]" if len(mixed) > 1 else f"mix: {next(iter(mixed))}"
    raise BuildError(
        f"this ```{spec.fence} mixes {' and '.join(f'{w} ({mixed[w]})' for w in unsaid)}: "
        "two machines, or KVM and emulation, differ for reasons the subjects' names do not "
        f"show; to show them together anyway, say so with '{key}' and the caption names "
        "each one's host and accelerator", path, spec.line)


def pinned_run(lab: Lab, spec: EmbedSpec, path: Path, host: str | None = None) -> Result:
    """The run a pinned spec shows (from ``host``, when not the spec's); an error at
    its key's line when there is none."""
    host = spec.host if host is None else host
    found = lab.pinned(spec.experiment, host, spec.pin)
    if found is not None:
        return found
    good = lab.ok_runs(spec.experiment, host)
    of = f"{spec.experiment}" + (f" from host {host!r}" if host else "")
    if spec.result:
        stored = next((r for r in lab.store.runs(spec.experiment) if r.id == spec.result), None)
        if stored is not None and stored.status != "ok":
            why = f"run {spec.result} of {of} {stored.status}: pin a good run"
        elif stored is not None:
            why = f"run {spec.result} of {spec.experiment} is from host {stored.lab_host!r}"
        else:
            ids = [r.id for r in good]
            at = bisect_left(ids, spec.result)
            nearest = ", ".join(ids[max(0, at - 2):at + 2]) or "none: it has no good run"
            why = (f"no run {spec.result!r} of {of} (nearest: {nearest}; "
                   f"`chronicle lab history {spec.experiment}` lists them all)")
        raise BuildError(why, path, spec.line_of("result"))
    first = f"its first good run is from {good[0].day}" if good else "it has no good run"
    raise BuildError(f"no good run of {of} on or before {spec.as_of} ({first})", path,
                     spec.line_of("as_of"))


def check_history(spec: EmbedSpec, runs: Sequence[Result], path: Path) -> None:
    """A history draws each metric over two runs at least: never an empty chart."""
    for metric in spec.metrics:
        measured = [r for r in runs if any(r.values(s, metric) for s in spec.subjects)]
        if len(measured) < 2:
            where = spec.line_of("metrics" if "metrics" in spec.key_lines else "metric")
            raise BuildError(
                f"a history of {metric} in {spec.experiment} needs two good runs that "
                f"measured it, and there {'is one' if measured else 'is none'}"
                f"{f' ({measured[0].id})' if measured else ''}: run `chronicle lab run "
                f"--force {spec.experiment}` for another", path, where)


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
            names: tuple[list[str], list[str]] | None = None,
            right_subjects: list[str] | None = None) -> EmbedSpec:
    """Check every name against ``result`` and fill in the defaults it implies
    (``names``: the result's metrics and subjects, when known; ``right_subjects``: those
    of the right side's run, when it comes from another host's)."""
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
            check(getattr(spec, side), right_subjects if side == "right" and right_subjects
                  is not None else subjects, "subject", side)
    if spec.metrics and spec.subjects:
        return spec
    return replace(spec, metrics=spec.metrics or tuple(metrics),
                   subjects=spec.subjects or tuple(subjects))


class _NoCharts:
    """Charts as empty ``<svg>`` elements: a figure's text without drawing anything."""

    def svg(self, chart: Any) -> str:
        return "<svg></svg>"


NO_CHARTS: Any = _NoCharts()


def parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
