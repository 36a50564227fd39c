"""The one check of a result: the schema, and the rules a schema cannot say.

Every reader and writer of results goes through here: the runner (each line a script
prints, as it arrives), the store (every file it loads, every result before it is
written), hence the site build, and ``chronicle lab validate``. A problem is one line,
``<JSON path>: <what is wrong>`` (``samples/3/value: …``), so it can be shown beside the
file's name.

The rules beyond ``schemas/result.schema.json``:

* **Finite numbers**, everywhere in the file: Python's ``json`` reads ``NaN`` and
  ``Infinity``, which no statistic or chart can use.
* **Durations are not negative.** A sample is a duration when its unit is a time unit
  (:data:`DURATION_UNITS`) or its metric's name ends in one (``boot_ms``, ``wait_s``),
  whatever unit it states.
* **The run did not start in the future**: ``provenance.started`` (the id's time when
  there is none) is at most :data:`CLOCK_SKEW` ahead of this machine's clock. A file
  that breaks this came from a host whose clock ran fast. The id itself may lie ahead
  of the clock: the store dates a new run's id one second after the newest stored one
  when that one is not older (:meth:`ResultStore.new_id`), so runs stay in order
  after such a file.
* **A repeat names an earlier run**: ``provenance.repeats`` (written by ``lab run
  --again``) is the id of a run made before this one.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "result.schema.json"
DURATION_UNITS = ("ns", "us", "µs", "ms", "s", "min", "h")
CLOCK_SKEW = timedelta(minutes=5)
_DURATION_NAME = re.compile(rf"_(?:{'|'.join(DURATION_UNITS)})$")
_CONFLICT_MARKER = re.compile(r"^(?:<{7}|>{7}|\|{7})(?: |$)|^={7}$")


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@cache
def _validator(part: str = ""):  # noqa: ANN202 - jsonschema is imported here, lazily
    """The schema's validator, or one for a part of it (``$defs/sample``)."""
    import jsonschema

    schema = load_schema()
    if part:
        sub = schema
        for name in part.split("/"):
            sub = sub[name]
        schema = {**sub, "$defs": schema.get("$defs", {})}
    return jsonschema.Draft202012Validator(schema)


def is_duration(metric: str, unit: str) -> bool:
    return unit in DURATION_UNITS or bool(_DURATION_NAME.search(metric))


# -- the checks ---------------------------------------------------------------------------

def sample_problems(data: Any) -> list[str]:
    """What is wrong with one sample (a line a script printed, or one stored)."""
    problems = _schema_problems(_validator("$defs/sample"), data)
    if problems:
        return problems
    problems = [f"{where}: {what}" for where, what in _non_finite(data, "")]
    return problems or list(_negative_duration(data, ""))


def provenance_problems(data: Any) -> list[str]:
    """What is wrong with provenance facts (a script's report, or a stored whole)."""
    problems = _schema_problems(_validator("properties/provenance"), data)
    return problems or [f"{where}: {what}" for where, what in _non_finite(data, "")]


def result_problems(data: Any) -> list[str]:
    """What is wrong with one result, as its JSON object; empty when it is sound."""
    problems = _schema_problems(_validator(), data)
    if problems:
        return problems
    problems = [f"{where}: {what}" for where, what in _non_finite(data, "")]
    for index, sample in enumerate(data["samples"]):
        problems += _negative_duration(sample, f"samples/{index}/")
    repeats = data["provenance"].get("repeats")
    if repeats is not None and repeats >= data["id"]:
        problems.append(f"provenance/repeats: {repeats!r} is not an earlier run than "
                        f"{data['id']!r}")
    started = _start_time(data)
    now = datetime.now(UTC)
    if started is not None and started > now + CLOCK_SKEW:
        ahead = _duration_words(started - now)
        problems.append(f"provenance/started: {started:%Y-%m-%dT%H:%M:%SZ} is {ahead} in the "
                        "future (a clock that ran fast?)")
    return problems


def file_problems(path: Path) -> tuple[dict[str, Any] | None, list[str], int | None]:
    """A stored file's JSON (None when it cannot be read), its problems, and the line of
    the first problem when there is one.

    Told apart because they have different fixes: a merge-conflicted file needs a person,
    a truncated one came from an interrupted copy, a schema violation from a bug.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [f"unreadable: {exc.strerror}"], None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [f"not UTF-8 (byte {exc.start})"], None
    conflicts = [number for number, line in enumerate(text.splitlines(), start=1)
                 if _CONFLICT_MARKER.match(line.rstrip("\r"))]
    if conflicts:
        return None, [f"merge conflict markers at line(s) "
                      f"{', '.join(map(str, conflicts[:5]))}"], conflicts[0]
    if not text.strip():
        return None, ["empty file"], None
    try:
        data = json.loads(text)
        problems = result_problems(data)
    except json.JSONDecodeError as exc:
        # A string left open runs to the end of the text: the file was cut inside it.
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            return None, [f"truncated: JSON ends early at line {exc.lineno}"], exc.lineno
        return None, [f"corrupt JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"], \
            exc.lineno
    except RecursionError:
        return None, ["nested too deeply to read"], None
    if problems:
        return data, problems, None
    if data["id"] != path.stem:
        problems.append(f"id: {data['id']!r} does not match the file name")
    if data["experiment"] != path.parent.name:
        problems.append(f"experiment: {data['experiment']!r} does not match its folder")
    if not text.endswith("\n"):
        problems.append("no final newline (not canonical)")
    return data, problems, None


def validate_file(path: Path) -> list[str]:
    """Problems with one stored result file; empty when it is sound."""
    return file_problems(path)[1]


def validate_store(root: Path) -> dict[Path, list[str]]:
    """Every result file under ``root`` that has a problem, with its problems."""
    found: dict[Path, list[str]] = {}
    if not Path(root).is_dir():
        return found
    for path in sorted(Path(root).glob("*/*.json")):
        problems = validate_file(path)
        if problems:
            found[path] = problems
    return found


# -- pieces -------------------------------------------------------------------------------

def _schema_problems(validator: Any, data: Any) -> list[str]:
    found: list[str] = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.path]):
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        problem = f"{where}: {_message(error)}"
        if problem not in found:  # one error per missing key, all saying the same
            found.append(problem)
    return found


def _message(error: Any) -> str:
    """jsonschema's message, in the runner's words where a key is missing or unknown."""
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        return f"missing key(s) {', '.join(missing)}"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        unknown = sorted(str(k) for k in error.instance if k not in known)
        return f"unknown key(s) {', '.join(unknown)}"
    return error.message


def _negative_duration(sample: dict[str, Any], where: str) -> Iterator[str]:
    value = sample["value"]
    if math.isfinite(value) and value < 0 and is_duration(sample["metric"], sample["unit"]):
        yield (f"{where}value: {value!r} {sample['unit']} is a negative duration "
               f"(metric {sample['metric']})")


def _non_finite(data: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(data, float) and not math.isfinite(data):
        yield where or "(top)", f"{data!r} is not a finite number"
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _non_finite(value, f"{where}/{key}" if where else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _non_finite(value, f"{where}/{index}" if where else str(index))


def _start_time(data: dict[str, Any]) -> datetime | None:
    text = data["provenance"].get("started") or data["id"][:16]
    for form in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y%m%dT%H%M%SZ"):
        try:
            return datetime.strptime(text, form).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _duration_words(span: timedelta) -> str:
    minutes = span.total_seconds() / 60
    if minutes < 120:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"
