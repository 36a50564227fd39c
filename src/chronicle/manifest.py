"""The dependency manifest: what every output file was made from, for incremental builds.

``.chronicle/manifest.json`` (one per output folder; another ``--out`` gets
``manifest-<hash>.json``) is canonical JSON::

    {"version": 2, "fingerprint": "...", "next_change": "2026-01-01T00:00:00+00:00",
     "uses_now": false, "warnings": [...], "stale": [...], "watch": ["lib/*.py"],
     "outputs": {"2025/03/boot-time/index.html":
                   {"hash": "<sha1 of the bytes>", "producer": "page",
                    "deps": {"code": "...", "config": "...", "context": "...",
                             "template:post.html": "...", "template:base.html": "...",
                             "tag:nix": "..."}}}}

``deps`` maps each input of the output to its hash *as it was when the output was last
made*. The dependency names are recorded while rendering (see
:class:`chronicle.render.Recorder`): every template Jinja loaded and every part of the
site model the template read. An output whose every dependency still hashes the same is
not rendered again; one that is rendered is written only if its bytes changed.

Dependency names and what their hash covers (:class:`Inputs`):

``code``             Chronicle's source and the versions of the packages that shape output
``config``           ``site/site.toml`` as parsed
``context``          the objects handed to this page's template (its post, neighbours, …)
``template:NAME``    the file the loader finds for NAME (a site override or the theme's)
``site.ATTR``        that part of the model (``entries``, ``tags``, ``years``, ``pages``,
                     ``index_pages``, ``feeds``, ``updated``, ``now``); any other
                     attribute counts as the whole model
``tag:SLUG``         a tag's name and slug (what ``site.tag(name).url`` needs)
``inputs:NAME``      the files an extra page generator declared it reads
``site``             the whole model (an extra generator that reads the site)
``result:NAME``      what the figures of experiment NAME show beyond their spec: its shown
                     result, staleness and the site's colours (``figures.Lab.input_digest``)
``chart:KEY``        a chart file a figure on the page shows (``.chronicle/charts/KEY.svg``,
                     named by its content: a record of use, never a reason to render)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chronicle.cache import Cache, digest
from chronicle.swap import atomic_write

VERSION = 2


@dataclass
class Record:
    hash: str
    producer: str
    deps: dict[str, str] = field(default_factory=dict)


@dataclass
class Manifest:
    fingerprint: str = ""
    next_change: str = ""  # ISO time when a scheduled post becomes due ("" if none)
    uses_now: bool = False
    warnings: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # the stale results figures showed
    watch: list[str] = field(default_factory=list)  # input globs of experiment scripts
    outputs: dict[str, Record] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = {
            "version": VERSION, "fingerprint": self.fingerprint,
            "next_change": self.next_change, "uses_now": self.uses_now,
            "warnings": self.warnings, "stale": self.stale, "watch": self.watch,
            "outputs": {name: {"hash": r.hash, "producer": r.producer, "deps": r.deps}
                        for name, r in self.outputs.items()},
        }
        return (json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                + "\n").encode("utf-8")


def manifest_path(cache_folder: Path, out: Path, default_out: Path) -> Path:
    if out.absolute() == default_out.absolute():
        return cache_folder / "manifest.json"
    return cache_folder / f"manifest-{digest(str(out.absolute()))[:12]}.json"


def load_manifest(path: Path) -> Manifest | None:
    """The manifest at ``path``; None when missing, unreadable or of another version."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        return None
    return Manifest(
        fingerprint=data["fingerprint"], next_change=data["next_change"],
        uses_now=data["uses_now"], warnings=list(data["warnings"]),
        stale=list(data["stale"]), watch=list(data["watch"]),
        outputs={name: Record(r["hash"], r["producer"], dict(r["deps"]))
                 for name, r in data["outputs"].items()})


def save_manifest(manifest: Manifest, path: Path) -> None:
    # Not durable: a manifest a power cut empties reads as none (a full build), and an
    # fsync would cost every build.
    atomic_write(path, manifest.to_json(), durable=False)


def tree_digest(cache: Cache, folders: Iterable[Path], names: bool = True) -> str:
    """Hash of every file (path and content) under ``folders``, hidden ones skipped."""
    parts: list[str] = []
    for folder in folders:
        parts.append(f"folder {folder}")
        if folder.is_file():
            parts.append(cache.file_hash(folder))
            continue
        prefix = len(str(folder)) + 1
        for path in _walk(folder):
            parts += [path[prefix:] if names else "", cache.file_hash(path)]
    return digest(*parts)


def _walk(folder: Path) -> list[str]:
    # strings, not Paths: this runs over every post on every build
    found = []
    for top, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        found += [os.path.join(top, name) for name in sorted(files) if not name.startswith(".")]
    return found


# -- the current hash of each dependency ----------------------------------------------------

_PLAIN = (str, int, float, bool)

Memo = dict[int, tuple[Any, str]]
"""Digests of immutable values (tuples, dataclasses) by ``id``, for one build's model: a
tag page's context holds the same :class:`~chronicle.model.Tag` as ``site.tags``. The
value is kept beside its digest so its ``id`` cannot be reused while the memo lives."""


def value_digest(value: Any, memo: Memo | None = None) -> str:
    """Hash of a template context value: model objects by content, the rest by repr.

    ``memo``: share work between calls over one immutable model (see :data:`Memo`)."""
    if value is None or isinstance(value, _PLAIN):
        return repr(value)
    kind = type(value)
    if kind is dict:  # plain containers first: exact types have no ``digest`` attribute
        return digest("dict", *[f"{k}={value_digest(v, memo)}"
                                for k, v in sorted(value.items())])
    if kind is list:
        return digest("list", *[value_digest(v, memo) for v in value])
    if memo is not None:
        known = memo.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
    if kind is tuple:
        found = digest("tuple", *[_part(v, memo) for v in value])
    else:
        found = _object_digest(value, memo)
    if memo is not None and (kind is tuple or _frozen(value)):
        memo[id(value)] = (value, found)
    return found


def _frozen(value: Any) -> bool:
    params = getattr(value, "__dataclass_params__", None)
    return bool(params is not None and params.frozen)


def _part(value: Any, memo: Memo | None) -> str:
    # the common element is a model object with its own digest: no recursion for it
    own = getattr(value, "digest", None)
    if type(own) is str and not isinstance(value, _PLAIN):
        return own
    return value_digest(value, memo)


def _object_digest(value: Any, memo: Memo | None) -> str:
    own = getattr(value, "digest", None)
    if isinstance(own, str):
        return own
    name = type(value).__name__
    if isinstance(value, tuple | list):
        return digest(name, *(value_digest(v, memo) for v in value))
    if isinstance(value, dict):
        return digest(name, *(f"{k}={value_digest(v, memo)}" for k, v in sorted(value.items())))
    if hasattr(value, "__dataclass_fields__"):
        return digest(name, *(f"{k}={value_digest(getattr(value, k), memo)}"
                              for k in value.__dataclass_fields__))
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return digest(name, repr(value))


class Inputs:
    """Current hashes of dependencies by name, each computed once per build."""

    def __init__(self, site: Any, base: dict[str, str],
                 template_hash: Callable[[str], str],
                 extra: dict[str, Callable[[], str]] | None = None):
        self.site = site
        self._known = dict(base)  # "code", "config"
        self._template_hash = template_hash
        self._extra = extra or {}
        self.memo: Memo = {}  # the model is immutable: its parts are hashed once a build

    def get(self, name: str) -> str:
        found = self._known.get(name)
        if found is None:
            found = self._known[name] = self._compute(name)
        return found

    def unchanged(self, deps: dict[str, str], context: str) -> bool:
        """Do ``deps`` (recorded last time) all still hash the same?"""
        for name, value in deps.items():
            current = context if name == "context" else self.get(name)
            if current != value:
                return False
        return True

    def _compute(self, name: str) -> str:
        kind, _, rest = name.partition(":")
        if kind == "template":
            return self._template_hash(rest)
        if kind == "tag":
            tag = next((t for t in self.site.tags if t.slug == rest), None)
            return digest(tag.name, tag.slug) if tag else "missing"
        if name in self._extra:
            return self._extra[name]()
        if kind == "result":
            return "missing"  # no figure shows the experiment now
        if kind == "chart":
            return rest  # a chart file is named by its content
        if name == "site":
            return digest(*(self.get(f"site.{a}") for a in SITE_PARTS))
        if name.startswith("site."):
            attr = name.removeprefix("site.")
            if attr == "config":
                return self.get("config")
            if attr in SITE_PARTS:
                return value_digest(getattr(self.site, attr), self.memo)
            return self.get("site")  # a method or anything new: the whole model
        raise KeyError(name)


# Parts of the model a template may read; newer/older/tag/sitemap derive from these.
SITE_PARTS = ("entries", "pages", "tags", "years", "index_pages", "feeds", "updated", "now")
