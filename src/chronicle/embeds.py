"""``chart``, ``table`` and ``compare`` fences → HTML figures, from the results store.

A post names an experiment in the fence's info string and says what to show in a
small YAML body (``DESIGN.md``, "Embedding in posts")::

    ```chart boot-to-init            ```table footprint          ```compare boot-to-init
    metric: boot_ms                  metrics: [pss_mib]          left: qemu-microvm
    kind: box                        ```                         right: incus-container
    ```                                                          metrics: [boot_ms]
                                                                 ```

Every name is checked against the stored result; a mistake is a :class:`BuildError`
naming the post and the line, with the valid choices. One :class:`Embedder` serves a
whole build (it holds the store, the chart cache and what went stale); its
:meth:`Embedder.for_post` gives the hook the markdown renderer calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from chronicle import embeds_html
from chronicle.charts import CHART_KINDS, ChartCache, assign_colours, subject_colour
from chronicle.errors import BuildError
from chronicle.lab import experiment as lab_experiment
from chronicle.lab.results import BadFile, Result, ResultStore
from chronicle.lab.stats import Ratio, Summary, ratio_ci, summarize
from chronicle.paths import SitePaths

FENCE_KINDS = ("chart", "table", "compare")
STATISTICS = ("median", "mean", "min", "p95")
# key → what it must be; per fence kind, the keys it accepts.
_KEY_TYPES = {
    "metric": "a metric name",
    "metrics": "a list of metric names",
    "subjects": "a list of subject names",
    "kind": f"one of {', '.join(CHART_KINDS)}",
    "title": "a string",
    "statistic": f"one of {', '.join(STATISTICS)}",
    "left": "a subject name",
    "right": "a subject name",
    "host": "a lab host name",
}
_KEYS = {
    "chart": ("metric", "metrics", "subjects", "kind", "title", "statistic", "host"),
    "table": ("metric", "metrics", "subjects", "title", "host"),
    "compare": ("left", "right", "metric", "metrics", "kind", "title", "host"),
}


@dataclass(frozen=True)
class EmbedSpec:
    """A parsed fence: what to show. Names are checked against a result separately."""

    fence: str
    experiment: str
    line: int
    metrics: tuple[str, ...] = ()  # empty: every metric of the result
    subjects: tuple[str, ...] = ()  # empty: every subject, sorted
    kind: str = "box"
    title: str = ""
    statistic: str = "median"
    left: str = ""
    right: str = ""
    host: str = ""  # a lab host of site/lab.toml; empty: the newest good run's host
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


@dataclass(frozen=True)
class StaleResult:
    experiment: str
    result_id: str
    reasons: tuple[str, ...]
    posts: tuple[Path, ...] = ()

    def __str__(self) -> str:
        return f"{self.experiment} ({self.result_id}): {'; '.join(self.reasons)}"


# -- parsing ------------------------------------------------------------------------------

def parse_fence(fence: str, experiment: str, body: str, line: int, path: Path) -> EmbedSpec:
    """Read a fence's YAML body into an :class:`EmbedSpec`; shape errors only."""
    if fence not in FENCE_KINDS:
        raise BuildError(f"unknown embed {fence!r} (known: {', '.join(FENCE_KINDS)})", path, line)
    if not experiment:
        raise BuildError(f"```{fence} needs an experiment name: ```{fence} EXPERIMENT",
                         path, line)
    data, key_lines = _load_yaml(body, line, path)
    allowed = _KEYS[fence]
    for key in data:
        if key not in allowed:
            raise BuildError(f"unknown key {key!r} in ```{fence} (known: {', '.join(allowed)})",
                             path, key_lines.get(key, line))

    def where(key: str) -> int:
        return key_lines.get(key, line)

    def text(key: str) -> str:
        value = data.get(key, "")
        if key in ("left", "right") and isinstance(value, dict) and "host" in value:
            raise BuildError(f"{key!r} names a host: one figure shows one host's run, so its "
                             "numbers are never a mix of machines; pick the run with 'host: "
                             "NAME', and compare hosts with `chronicle lab diff EXPERIMENT "
                             "--hosts A,B`", path, where(key))
        if not isinstance(value, str):
            raise BuildError(f"{key!r} must be {_KEY_TYPES[key]}, not {value!r}", path, where(key))
        return value

    def names(key: str) -> tuple[str, ...]:
        value = data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or not value:
            raise BuildError(f"{key!r} must be {_KEY_TYPES[key]}, e.g. [a, b], not {value!r}",
                             path, where(key))
        if len(set(value)) != len(value):
            raise BuildError(f"{key!r} names something twice: {value!r}", path, where(key))
        return tuple(value)

    def choice(key: str, choices: tuple[str, ...], default: str) -> str:
        value = data.get(key, default)
        if value not in choices:
            raise BuildError(f"{key!r} must be {_KEY_TYPES[key]}, not {value!r}", path, where(key))
        return value

    if "metric" in data and "metrics" in data:
        raise BuildError("give 'metric' or 'metrics', not both", path, where("metrics"))
    metrics: tuple[str, ...] = ()
    if "metric" in data:
        metrics = (text("metric"),)
    elif "metrics" in data:
        metrics = names("metrics")
    if fence == "chart" and not metrics:
        raise BuildError("```chart needs 'metric: NAME' (or 'metrics: [A, B]')", path, line)
    spec = EmbedSpec(
        fence=fence, experiment=experiment, line=line, metrics=metrics,
        subjects=names("subjects") if "subjects" in data else (),
        kind=choice("kind", CHART_KINDS, "strip" if fence == "compare" else "box"),
        title=text("title"),
        statistic=choice("statistic", STATISTICS, "median"),
        left=text("left"), right=text("right"), host=text("host"), key_lines=key_lines,
    )
    if fence == "compare":
        for side in ("left", "right"):
            if not getattr(spec, side):
                raise BuildError(f"```compare needs '{side}: SUBJECT'", path, line)
        if spec.left == spec.right:
            raise BuildError("```compare needs two different subjects", path, where("right"))
    return spec


def _load_yaml(body: str, line: int, path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The body as a mapping plus each top-level key's line in the *file*."""
    first = line + 1  # the body starts on the line after the opening fence
    try:
        node = yaml.compose(body, Loader=yaml.SafeLoader)
        data = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise BuildError(f"bad YAML in embed: {problem}", path,
                         first + mark.line if mark else line) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise BuildError("an embed's body must be a YAML mapping (key: value lines)", path, first)
    lines = {k.value: first + k.start_mark.line for k, _ in node.value
             if isinstance(k, yaml.ScalarNode)}
    return {str(k): v for k, v in data.items()}, lines


# -- the build-wide embedder ----------------------------------------------------------------

class Embedder:
    """One per build: results, chart cache, summaries and stale results, shared by posts."""

    def __init__(self, root: Path, *, store: ResultStore | None = None,
                 allow_missing: bool = False, base_path: str = "/",
                 charts: ChartCache | None = None):
        self.root = Path(root)
        paths = SitePaths(self.root)
        self.store = store or ResultStore(paths.results)
        self.allow_missing = allow_missing
        self.base_path = "/" + base_path.strip("/") + "/" if base_path.strip("/") else "/"
        self.charts = charts or ChartCache(paths.cache / "charts")
        self._scripts: dict[str, lab_experiment.Experiment] | None = None
        self._stale: dict[str, tuple[str, ...]] = {}
        self._stale_posts: dict[tuple[str, str], set[Path]] = {}
        self._summaries: dict[tuple[str, str, str], Summary] = {}
        self._ratios: dict[tuple[str, str, str, str], Ratio] = {}
        self._colours: dict[str, str] | None = None

    # -- lookups shared with the lab pages --------------------------------------------------
    def scripts(self) -> dict[str, lab_experiment.Experiment]:
        """The experiment scripts by name, discovered once per build."""
        if self._scripts is None:
            self._scripts = {e.name: e for e in lab_experiment.discover(self.root)}
        return self._scripts

    def experiments(self) -> list[str]:
        """Every experiment a post may name: discovered scripts and stored results."""
        return sorted(set(self.scripts()) | set(self.store.experiments()))

    def colour(self, subject: str) -> str:
        """The subject's colour on every page of this site (see charts.assign_colours)."""
        if self._colours is None:
            subjects = set()
            for name in self.store.experiments():
                result = self.store.shown(name)
                if result is not None:
                    subjects.update(measured_or_declared(result))
            self._colours = assign_colours(subjects)
        return self._colours.get(subject) or subject_colour(subject)

    def lab_url(self, experiment: str) -> str:
        return f"{self.base_path}lab/{experiment}/"

    def staleness(self, result: Result) -> tuple[str, ...]:
        """Why ``result`` is stale: its script, inputs or params changed (never the
        environment: a site built on another machine must not call every result stale)."""
        if result.id not in self._stale:
            script = self.scripts().get(result.experiment)
            self._stale[result.id] = (
                ("its experiment script is gone",) if script is None
                else tuple(lab_experiment.staleness(script, result, include_environment=False)))
        return self._stale[result.id]

    def skipped(self, result: Result) -> list[BadFile]:
        """Invalid result files newer than ``result``: the run shown instead of them."""
        return self.store.bad_files(result.experiment, newer_than=result)

    def relative(self, path: Path) -> Path:
        return path.relative_to(self.root) if path.is_relative_to(self.root) else path

    def summary(self, result: Result, subject: str, metric: str) -> Summary:
        key = (result.id, subject, metric)
        if key not in self._summaries:
            self._summaries[key] = summarize(result.values(subject, metric))
        return self._summaries[key]

    def ratio(self, result: Result, a: str, b: str, metric: str) -> Ratio:
        key = (result.id, a, b, metric)
        if key not in self._ratios:
            self._ratios[key] = ratio_ci(result.values(a, metric), result.values(b, metric))
        return self._ratios[key]

    @property
    def stale_results(self) -> list[StaleResult]:
        """Stale results that some post embeds: the build summary lists them, --strict fails."""
        found = []
        for experiment, host in sorted(self._stale_posts):
            result = self.store.shown(experiment, host=host or None)
            if result is not None and self.staleness(result):
                found.append(StaleResult(experiment, result.id, self.staleness(result),
                                         tuple(sorted(self._stale_posts[experiment, host]))))
        return found

    def for_post(self, path: Path) -> PostEmbeds:
        return PostEmbeds(self, Path(path))

    def __call__(self, path: Path) -> PostEmbeds:  # so the embedder itself is the factory
        return self.for_post(path)

    def _used(self, experiment: str, host: str, path: Path) -> None:
        self._stale_posts.setdefault((experiment, host), set()).add(path)


class PostEmbeds:
    """The markdown hook for one post: ``hook(kind, experiment, body, line) -> html``."""

    def __init__(self, embedder: Embedder, path: Path):
        self.embedder = embedder
        self.path = path
        self.results_used: dict[str, Result] = {}
        self.placeholders_for_bad: dict[str, BadFile] = {}  # --allow-missing, no valid run

    @property
    def warnings(self) -> list[str]:
        """One per stale result this post shows: listed by the build, fatal with --strict."""
        found = []
        for name, result in sorted(self.results_used.items()):
            reasons = self.embedder.staleness(result)
            if reasons:
                found.append(f"{self.path}: shows a stale result of {name} ({result.id}): "
                             f"{'; '.join(reasons)}")
            for bad in self.embedder.skipped(result):
                found.append(f"{self.path}: {self.embedder.relative(bad.path)} is not a valid "
                             f"result ({bad.summary}); showing the run before it, {result.id}")
        for name, bad in sorted(self.placeholders_for_bad.items()):
            found.append(f"{self.path}: {self.embedder.relative(bad.path)} is not a valid "
                         f"result ({bad.summary}); {name} has no valid run: a placeholder shown")
        return found

    @property
    def updated(self) -> datetime | None:
        """When the newest embedded result finished: a feed's ``updated`` moves with it."""
        times = [_parse_time(r.finished or r.started) for r in self.results_used.values()]
        times = [t for t in times if t is not None]
        return max(times) if times else None

    def __call__(self, fence: str, experiment: str, body: str, line: int) -> str:
        spec = parse_fence(fence, experiment, body, line, self.path)
        known = self.embedder.experiments()
        if spec.experiment not in known:
            raise BuildError(f"unknown experiment {spec.experiment!r} (known: "
                             f"{', '.join(known) or 'none yet'})", self.path, line)
        result = self.embedder.store.shown(spec.experiment, host=spec.host or None)
        if result is None and spec.host and not self.embedder.allow_missing:
            hosts = ", ".join(self.embedder.store.hosts(spec.experiment)) or "none"
            raise BuildError(f"experiment {spec.experiment!r} has no successful run from host "
                             f"{spec.host!r} (hosts with runs: {hosts}): run `chronicle lab "
                             f"run {'' if spec.host == 'local' else f'--on {spec.host} '}"
                             f"{spec.experiment}`, or build with "
                             "--allow-missing for a placeholder", self.path, spec.line_of("host"))
        if result is None:
            bad = self.embedder.store.bad_files(spec.experiment)
            if not self.embedder.allow_missing:
                why = (f" ({self.embedder.relative(bad[-1].path)} is not a valid result: "
                       f"{bad[-1].summary})" if bad else "")
                raise BuildError(f"experiment {spec.experiment!r} has no successful run yet"
                                 f"{why}: run `chronicle lab run {spec.experiment}`, or build "
                                 "with --allow-missing for a placeholder", self.path, line)
            if bad:
                self.placeholders_for_bad[spec.experiment] = bad[-1]
            return embeds_html.placeholder(spec, self.embedder.lab_url(spec.experiment))
        spec = resolve(spec, result, self.path)
        # One post may show an experiment from two hosts: each is its own result to watch.
        used = f"{spec.experiment} on {spec.host}" if spec.host else spec.experiment
        self.results_used[used] = result
        self.embedder._used(spec.experiment, spec.host, self.path)
        return embeds_html.render(spec, result, self.embedder)


def measured_or_declared(result: Result) -> list[str]:
    """Subjects with samples, then those the script declared but could not measure."""
    declared = sorted((result.provenance.get("subjects") or {}).keys())
    return result.subjects + [s for s in declared if s not in result.subjects]


def resolve(spec: EmbedSpec, result: Result, path: Path) -> EmbedSpec:
    """Check every name against ``result`` and fill in the defaults it implies."""
    metrics = result.metrics
    subjects = measured_or_declared(result)

    def check(name: str, valid: list[str], what: str, key: str) -> None:
        if name not in valid:
            raise BuildError(f"unknown {what} {name!r} in {result.experiment} (known: "
                             f"{', '.join(valid) or 'none'})", path, spec.line_of(key))

    for metric in spec.metrics:
        check(metric, metrics, "metric", "metrics" if "metrics" in spec.key_lines else "metric")
    for subject in spec.subjects:
        check(subject, subjects, "subject", "subjects")
    for side in ("left", "right"):
        if getattr(spec, side):
            check(getattr(spec, side), subjects, "subject", side)
    return replace(spec, metrics=spec.metrics or tuple(metrics),
                   subjects=spec.subjects or tuple(subjects))


def make_factory(options: Any) -> Embedder:
    """The build's embed factory (``BuildOptions`` in, ``source path -> hook`` out)."""
    from chronicle.config import load_config

    config = load_config(SitePaths(options.root).config)
    return Embedder(options.root, allow_missing=options.allow_missing,
                    base_path=urlsplit(config.base_url).path or "/")


def _parse_time(text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
