"""A markdown-it-py plugin: ``chart``, ``table`` and ``compare`` fences become figures.

Kinds of chart: ``box``, ``strip``, ``bar`` and ``cdf`` draw each metric's values per
subject; ``stacked`` draws one bar per subject whose segments are the metrics (phases
that add up, e.g. ``metrics: [kernel_to_init_ms, init_to_app_ms, outside_ms]``);
``line`` draws each metric against the metric named by ``x``, samples paired by run
(e.g. ``x: instances`` for a density sweep).

Syntax added: a fenced block whose info string starts with one of :data:`FENCE_KINDS`
is an *embed*, not code. The second word names an experiment; the body is a small YAML
mapping saying what to show (``DESIGN.md``, "Embedding in posts")::

    ```chart boot-to-init            ```table footprint          ```compare boot-to-init
    metric: boot_ms                  metrics: [pss_mib]          left: qemu-microvm
    kind: box                        ```                         right: incus-container
    ```                                                          metrics: [boot_ms]
                                                                 ```

Every fence shows the newest good run unless ``result: RUN_ID`` or ``as_of: YYYY-MM-DD``
pins one; ``kind: history`` draws a chart's metrics over every good run instead.
``host: NAME`` takes the run from one lab host; a comparison's side may name its own,
``left: {subject: qemu-microvm, host: kvmbox}``, to put two hosts' runs side by side.
A figure never mixes hosts, or KVM with TCG, silently: the build refuses one that would,
unless the fence says ``mix: hosts``, ``mix: accelerators`` or ``mix: [hosts,
accelerators]``; its caption then names each side's host and accelerator.

:func:`embed_plugin` adds a core rule, run after block parsing, that turns each such
``fence`` token into an ``embed`` token whose parsed, shape-checked :class:`EmbedSpec`
is ``token.meta["spec"]``. Names are *not* checked here: the rendered body does not
depend on the results store, so it is cached like any other (the build resolves the
specs against the store between its two passes, :mod:`chronicle.figures`). The
``embed`` render rule writes a placeholder, :func:`placeholder`, that a page's renderer
replaces with the figure (:func:`fill`).

The rule reads ``env["chronicle"]`` (see :mod:`chronicle.markdown`) for the document's
``path`` and ``line_offset`` (so lines are the file's, front matter included), and
appends a bad fence's :class:`BuildError` to its ``errors`` and each spec to ``embeds``.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from chronicle.cache import Unread
from chronicle.errors import BuildError

FENCE_KINDS = ("chart", "table", "compare")
CHART_KINDS = ("box", "strip", "bar", "cdf", "stacked", "line", "history")
STATISTICS = ("median", "mean", "min", "p95")
MIXES = ("hosts", "accelerators")  # what a fence's ``mix:`` may allow one figure to hold
SIDE_KEYS = ("subject", "host")
# key → what it must be; per fence kind, the keys it accepts.
_KEY_TYPES = {
    "metric": "a metric name",
    "metrics": "a list of metric names",
    "subjects": "a list of subject names",
    "kind": f"one of {', '.join(CHART_KINDS)}",
    "title": "a string",
    "statistic": f"one of {', '.join(STATISTICS)}",
    "left": "a subject name or {subject: NAME, host: HOST}",
    "right": "a subject name or {subject: NAME, host: HOST}",
    "mix": f"one of {', '.join(MIXES)} or a list of them",
    "host": "a lab host name",
    "result": "a run id, as `chronicle lab history` lists them",
    "as_of": "a date, YYYY-MM-DD",
    "x": "a metric name (the x axis of kind: line)",
}
_KEYS = {
    "chart": ("metric", "metrics", "subjects", "kind", "title", "statistic", "host", "result",
              "as_of", "mix", "x"),
    "table": ("metric", "metrics", "subjects", "title", "host", "result", "as_of", "mix"),
    "compare": ("left", "right", "metric", "metrics", "kind", "title", "host", "result",
                "as_of", "mix"),
}
PLACEHOLDER_MARK = "<!--chronicle-figure:"
_PLACEHOLDER = re.compile(r"<!--chronicle-figure:(\d+)-->\n")


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
    # a comparison's side from its own lab host (``left: {subject: S, host: H}``); empty:
    # ``host``'s run, the same run as the other side's
    left_host: str = ""
    right_host: str = ""
    mix: tuple[str, ...] = ()  # what the figure may mix: hosts, accelerators (MIXES)
    # a pin: show this run (``result``) or the newest good one on or before this UTC date
    # (``as_of``, YYYY-MM-DD) instead of the newest; a history then ends at that run
    result: str = ""
    as_of: str = ""
    x: str = ""  # kind line: the metric along the x axis, paired with each value by run
    # where each key was written, for messages only
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False,
                                      metadata={"digest": False})

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    @property
    def pin(self) -> str:
        """``result=ID``, ``as_of=DATE`` or empty (the newest run)."""
        return f"result={self.result}" if self.result else \
            f"as_of={self.as_of}" if self.as_of else ""

    @property
    def source(self) -> str:
        """Which runs the figure draws from: ``EXPERIMENT``, ``EXPERIMENT@HOST`` when it
        names a lab host, then ``#history`` for a history and ``#`` and its :attr:`pin`
        when pinned (a page's dependency is named ``result:`` and this)."""
        return self.source_on(self.host)

    @property
    def sources(self) -> tuple[str, ...]:
        """Every :attr:`source` the figure draws from: a comparison whose sides name
        their own hosts draws from each side's (its page depends on both)."""
        return tuple(dict.fromkeys(self.source_on(h) for h in self.hosts))

    @property
    def hosts(self) -> tuple[str, ...]:
        """The lab host each side's run comes from (one for a chart or a table)."""
        if self.fence != "compare":
            return (self.host,)
        return (self.left_host or self.host, self.right_host or self.host)

    @property
    def split(self) -> bool:
        """Whether a comparison's two sides come from two hosts' runs, not one run."""
        return len(set(self.hosts)) > 1

    def source_on(self, host: str) -> str:
        found = f"{self.experiment}@{host}" if host else self.experiment
        if self.kind == "history" and self.fence == "chart":
            found += "#history"
        return found + (f"#{self.pin}" if self.pin else "")


class StoredSpecs(Unread):
    """A document's specs as the build cache keeps them with its parsed body, unpickled
    when its figures are resolved again; the experiments they name (sorted) are known
    unread, for the figure cache's key (:mod:`chronicle.figure_cache`)."""

    def __init__(self, data: bytes, length: int, experiments: tuple[str, ...]):
        super().__init__(data, length)
        self.experiments = experiments

    @staticmethod
    def packed(specs: Sequence[EmbedSpec]) -> tuple[bytes, int, tuple[str, ...]] | None:
        """What the cache keeps of ``specs`` (None for none): ``StoredSpecs(*packed)``."""
        if not specs:
            return None
        return (pickle.dumps(tuple(specs), pickle.HIGHEST_PROTOCOL), len(specs),
                tuple(sorted({spec.experiment for spec in specs})))


def embed_plugin(md: Any) -> None:
    """Turn ``chart``/``table``/``compare`` fences into ``embed`` tokens (see the module)."""
    md.core.ruler.after("block", "embed_fences", _embed_fences)
    md.add_render_rule("embed", _render_embed)


def is_embed(info: str) -> bool:
    words = info.split(maxsplit=1)
    return bool(words) and words[0] in FENCE_KINDS


def placeholder(index: int) -> str:
    """What the body holds where its ``index``-th figure goes."""
    return f"<!--chronicle-figure:{index}-->\n"


def fill(html: str, figure_html: Callable[[int], str]) -> str:
    """``html`` with each placeholder replaced by ``figure_html(index)``."""
    if PLACEHOLDER_MARK not in html:
        return html
    return _PLACEHOLDER.sub(lambda m: figure_html(int(m.group(1))), html)


def _embed_fences(state: Any) -> None:
    where = state.env["chronicle"]
    for token in state.tokens:
        if token.type != "fence" or not is_embed(token.info):
            continue
        words = token.info.split()
        line = (token.map[0] + 1 if token.map else 1) + where.line_offset
        token.type = "embed"
        try:
            spec = parse_fence(words[0], words[1] if len(words) > 1 else "", token.content,
                               line, where.path)
        except BuildError as exc:
            where.errors.append(exc)
            continue
        token.meta["spec"] = spec
        token.meta["index"] = len(where.embeds)
        where.embeds.append(spec)


def _render_embed(renderer: Any, tokens: Sequence[Any], idx: int, options: Any,
                  env: Any) -> str:
    index = tokens[idx].meta.get("index")
    return "" if index is None else placeholder(index)


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
    if "result" in data and "as_of" in data:
        raise BuildError("give 'result' or 'as_of', not both: each picks the run to show",
                         path, where("as_of"))
    as_of = data.get("as_of", "")
    sides = {side: _side(data.get(side, ""), side, path, where(side)) for side in ("left", "right")}
    mix = data.get("mix", [])
    mix = [mix] if isinstance(mix, str) else mix
    if "mix" in data and (not isinstance(mix, list) or not mix
                          or not all(m in MIXES for m in mix)):
        raise BuildError(f"'mix' must be {_KEY_TYPES['mix']}, not {data['mix']!r}", path,
                         where("mix"))
    if "hosts" in mix and fence != "compare":
        raise BuildError(f"```{fence} shows one run, from one host: only a ```compare "
                         "whose sides name hosts can mix hosts ('mix: accelerators' "
                         "allows KVM beside TCG)", path, where("mix"))
    if as_of and (not isinstance(as_of, str) or not _is_date(as_of)):
        raise BuildError(f"'as_of' must be {_KEY_TYPES['as_of']}, not {as_of!r}", path,
                         where("as_of"))
    spec = EmbedSpec(
        fence=fence, experiment=experiment, line=line, metrics=metrics,
        subjects=names("subjects") if "subjects" in data else (),
        kind=choice("kind", CHART_KINDS, "strip" if fence == "compare" else "box"),
        title=text("title"),
        statistic=choice("statistic", STATISTICS, "median"),
        left=sides["left"][0], right=sides["right"][0], left_host=sides["left"][1],
        right_host=sides["right"][1], host=text("host"), result=text("result"), as_of=as_of,
        mix=tuple(m for m in MIXES if m in mix), x=text("x"), key_lines=key_lines,
    )
    if fence == "compare" and spec.kind in ("stacked", "line", "history"):
        what = "a comparison shows one run" if spec.kind == "history" else \
            "a comparison draws each side on its own"
        raise BuildError(f"kind: {spec.kind} is for ```chart: {what}", path, where("kind"))
    if spec.kind == "line" and not spec.x:
        raise BuildError("kind: line needs 'x: METRIC', the metric along its x axis (e.g. "
                         "x: instances)", path, where("kind"))
    if spec.x and spec.kind != "line":
        raise BuildError(f"'x' is for kind: line only, not kind: {spec.kind}", path, where("x"))
    if spec.x and spec.x in spec.metrics:
        raise BuildError(f"'x' is {spec.x!r}, which is also a metric to draw", path, where("x"))
    if fence == "compare":
        for side in ("left", "right"):
            if not getattr(spec, side):
                raise BuildError(f"```compare needs '{side}: SUBJECT'", path, line)
        if (spec.left, spec.hosts[0]) == (spec.right, spec.hosts[1]):
            raise BuildError("```compare needs two different subjects, or one subject from "
                             "two hosts", path, where("right"))
        if spec.split and spec.result:
            raise BuildError("'result' pins one run, of one host, and the sides name two "
                             "hosts: pin both with 'as_of: YYYY-MM-DD'", path, where("result"))
    return spec


def _side(value: Any, side: str, path: Path, line: int) -> tuple[str, str]:
    """A comparison's side, ``NAME`` or ``{subject: NAME, host: HOST}``: (subject, host)."""
    if isinstance(value, str):
        return value, ""
    if not isinstance(value, dict):
        raise BuildError(f"{side!r} must be {_KEY_TYPES[side]}, not {value!r}", path, line)
    for key in value:
        if key not in SIDE_KEYS:
            raise BuildError(f"unknown key {key!r} in {side!r} (known: {', '.join(SIDE_KEYS)})",
                             path, line)
    subject, host = value.get("subject"), value.get("host", "")
    if not isinstance(subject, str) or not subject:
        raise BuildError(f"{side!r} needs 'subject: NAME', not {value!r}", path, line)
    if not isinstance(host, str):
        raise BuildError(f"'host' of {side!r} must be a lab host name, not {host!r}", path, line)
    return subject, host


def _is_date(text: str) -> bool:
    try:
        return len(text) == 10 and bool(date.fromisoformat(text))
    except ValueError:
        return False


class _Loader(yaml.SafeLoader):
    """YAML without timestamps: ``as_of: 2026-11-20`` stays the text written (and a
    day out of range is our message, not a crash in the constructor)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def _load_yaml(body: str, line: int, path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The body as a mapping plus each top-level key's line in the *file*."""
    first = line + 1  # the body starts on the line after the opening fence
    known = _LOADED.get(body)
    if known is not None:
        data, offsets = known
        return data, {key: first + offset for key, offset in offsets.items()}
    try:
        node = yaml.compose(body, Loader=_Loader)
        data = yaml.load(body, Loader=_Loader)  # a SafeLoader, less timestamps
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise BuildError(f"bad YAML in embed: {problem}", path,
                         first + mark.line if mark else line) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise BuildError("an embed's body must be a YAML mapping (key: value lines)", path, first)
    offsets = {k.value: k.start_mark.line for k, _ in node.value
               if isinstance(k, yaml.ScalarNode)}
    data = {str(k): v for k, v in data.items()}
    if len(_LOADED) < _LOADED_MAX:
        _LOADED[body] = (data, offsets)
    return data, {key: first + offset for key, offset in offsets.items()}


# Good bodies read, by text: a blog repeats the same few fences in post after post, and
# PyYAML in pure Python reads one in ~0.3 ms (a cold build at N = 10,000: ~17,000 of
# them). Nothing changes what it returns: parse_fence only reads it.
_LOADED: dict[str, tuple[dict[str, Any], dict[str, int]]] = {}
_LOADED_MAX = 4096
