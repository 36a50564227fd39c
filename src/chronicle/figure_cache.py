"""A document's resolved figures, kept in the build cache from one build to the next.

Resolving every document's specs on every build cost a 10,000-post blog with figures
~0.3 s an edit, for figures that had not changed. So each document's
:class:`DocumentFigures` is kept under a key covering all it was made from:

* the document's specs and path (its body's digest: the source's hash and path, and the
  code version), whether ``--allow-missing`` was given, and a post's date (its update
  notes compare the run shown with the one newest at that date);
* for each experiment its specs name: whether it is known, each of its stored files
  (the runs shown, pinned or drawn over time, the runs before them whose noise an update
  note weighs a change against, the invalid files a figure warns about) and its script's
  key parts (staleness, and the policy in its header);
* the site's subject colours and lab URLs, which every figure shows.

No result is hashed or checked to make a key. An edit then
resolves only the edited post's figures, and a new result only those of the documents
showing that experiment (on any host). The runs a figure shows are stored as their ids
and its numbers' store as a name, so a figure read back shows this build's runs (which
the key says are the same) and shares its numbers.

A document's figures are read back only when asked for (:class:`StoredFigures`): a build
shows those of the pages it renders, and the rest (the warnings, notes, dates and
sources every build needs) is stored beside them, read without them. An edit of one post
of a 10,000-post blog then reads one post's figures, not 3,334 posts' (~0.1 s).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from chronicle.cache import Unread, code_version, digest
from chronicle.lab import experiment as lab_experiment
from chronicle.lab.results import Result
from chronicle.parallel import lasting_objects

NAMESPACE = "figures"


@dataclass(frozen=True)
class DocumentFigures:
    """What resolving one document's specs gave: its figures (``chronicle.figures.
    Figure``), warnings and update notes, when the newest note's change was made, the
    ``(experiment, host)`` of each run it shows unpinned (for the stale list) and the
    sources its figures draw from (:attr:`EmbedSpec.sources`: its pages' dependencies)."""

    figures: tuple[Any, ...]
    warnings: tuple[str, ...]
    notes: tuple[Any, ...] = ()
    updated: datetime | None = None
    shown: tuple[tuple[str, str], ...] = ()
    sources: tuple[str, ...] = ()


class Keys:
    """Each document's key in :data:`NAMESPACE`, from what it reads (see the module)."""

    def __init__(self, lab: Any, known: Iterable[str], allow_missing: bool):
        self.lab = lab
        self.known = set(known)
        # what every figure shows beside its experiment's runs: its lab URL and colours
        self.base = digest(NAMESPACE, code_version(), f"allow_missing={allow_missing}",
                           lab.base_path, *(f"{s}={c}" for s, c in sorted(lab.colours.items())))
        self._experiments: dict[str, str] = {}

    def of(self, name: str, specs: Sequence[Any], posted: datetime | None) -> str:
        """The key of a document named ``name`` (its body's digest) showing ``specs``,
        a post of date ``posted`` (None: a page, which has no update notes)."""
        # specs the cache holds name their experiments unread (embed_fences.StoredSpecs)
        experiments = getattr(specs, "experiments", None) or sorted(
            {spec.experiment for spec in specs})
        return digest(self.base, name, posted.isoformat() if posted else "",
                      *(self.experiment(e) for e in experiments))

    def experiment(self, name: str) -> str:
        """Everything of experiment ``name`` a figure or an update note may read: every
        stored file (any run, on any host, or an invalid file that one is shown instead
        of), and its script's key parts, which decide staleness (the script's header
        holds the policy update notes judge by)."""
        if name not in self._experiments:
            lab = self.lab
            script = lab.scripts.get(name)
            parts = lab_experiment.key_parts(script, include_environment=False) \
                if script is not None else {"script": "none"}
            self._experiments[name] = digest(
                name, str(name in self.known), *(f"{k}={v}" for k, v in sorted(parts.items())),
                *(f"{path.name}={lab.cache.file_hash(path)}" for path in lab.store.files(name)))
        return self._experiments[name]


class StoredFigures(Unread):
    """A document's figures as the cache holds them, read back when first asked for.
    ``shows`` (each figure's :attr:`Figure.shows`) is known unread: the search index
    keys a post's record by it."""

    def __init__(self, data: bytes, shows: tuple[str, ...],
                 read: Callable[[bytes], tuple[Any, ...]]):
        super().__init__(data, len(shows), read)
        self.shows = shows


def load(cache: Any, keys: Mapping[Path, str], lab: Any) -> dict[Path, DocumentFigures]:
    """The documents of ``keys`` whose figures the cache holds, read back against
    ``lab``'s runs (each document's figures when first asked for)."""
    stored = cache.get_many(NAMESPACE, keys.values())
    runs: dict[str, dict[str, Result]] = {}

    def run(experiment: str, result_id: str) -> Result:
        if experiment not in runs:
            runs[experiment] = {r.id: r for r in lab.store.runs(experiment)}
        return runs[experiment][result_id]

    def read(data: bytes) -> tuple[Any, ...]:
        return _Reader(io.BytesIO(data), lab.stats, run).load()

    found = {}
    with lasting_objects():
        for path, key in keys.items():
            value = stored.get(key)
            if value is not None:
                data, shows, rest = value
                found[path] = replace(rest, figures=StoredFigures(data, shows, read))
    return found


def store(cache: Any, key: str, value: DocumentFigures, lab: Any) -> None:
    out = io.BytesIO()
    _Writer(out, lab.stats).dump(tuple(value.figures))
    cache.put(NAMESPACE, key, (out.getvalue(), tuple(f.shows for f in value.figures),
                               replace(value, figures=())))


class _Writer(pickle.Pickler):
    """Runs by their ids and the numbers' store by a name: both belong to the build
    that reads the figures back (and a run holds every sample). A dataclass (a figure,
    its spec, a note) by its fields' values in order, without their names: a 10,000-post
    blog's figures in 6.1 MB instead of 7.3, read back in 0.12 s instead of 0.17."""

    def __init__(self, file: io.BytesIO, stats: Any):
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self.stats = stats

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, Result):
            return ("run", obj.experiment, obj.id)
        if obj is self.stats:
            return "stats"
        return None

    def reducer_override(self, obj: Any) -> Any:
        names = _field_names(type(obj))
        if names is None:
            return NotImplemented
        return _rebuilt, (type(obj), tuple(getattr(obj, name) for name in names))


class _Reader(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, stats: Any, run: Any):
        super().__init__(file)
        self.stats, self.run = stats, run

    def persistent_load(self, pid: Any) -> Any:
        if pid == "stats":
            return self.stats
        _, experiment, result_id = pid
        return self.run(experiment, result_id)


@cache
def _field_names(kind: type) -> tuple[str, ...] | None:
    """A dataclass's field names, if its instances keep their fields in a ``__dict__``;
    else None (pickled as usual)."""
    if not is_dataclass(kind) or "__slots__" in vars(kind):
        return None
    return tuple(f.name for f in fields(kind))


def _rebuilt(kind: type, values: tuple[Any, ...]) -> Any:
    """A dataclass instance from its fields' values, as unpickling makes one: without
    calling ``__init__``."""
    made = object.__new__(kind)
    made.__dict__.update(zip(_field_names(kind), values, strict=True))  # type: ignore[arg-type]
    return made
