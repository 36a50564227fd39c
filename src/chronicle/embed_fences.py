"""A markdown-it-py plugin: ``chart``, ``table`` and ``compare`` fences become figures.

Syntax added: a fenced block whose info string starts with one of :data:`FENCE_KINDS`
is an *embed*, not code. The second word names an experiment; the body is a small YAML
mapping saying what to show (``DESIGN.md``, "Embedding in posts")::

    ```chart boot-to-init            ```table footprint          ```compare boot-to-init
    metric: boot_ms                  metrics: [pss_mib]          left: qemu-microvm
    kind: box                        ```                         right: incus-container
    ```                                                          metrics: [boot_ms]
                                                                 ```

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

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chronicle.errors import BuildError

FENCE_KINDS = ("chart", "table", "compare")
CHART_KINDS = ("box", "strip", "bar", "cdf")
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
    # where each key was written, for messages only
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, hash=False,
                                      metadata={"digest": False})

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)

    @property
    def source(self) -> str:
        """Which runs the figure draws from: ``EXPERIMENT``, or ``EXPERIMENT@HOST`` when
        it names a lab host (a page's dependency is named ``result:`` and this)."""
        return f"{self.experiment}@{self.host}" if self.host else self.experiment


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
    known = _LOADED.get(body)
    if known is not None:
        data, offsets = known
        return data, {key: first + offset for key, offset in offsets.items()}
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
