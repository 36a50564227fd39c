"""The result schema, read by a checker of the few JSON Schema keywords it uses.

``schemas/result.schema.json`` is the one definition of a result's shape, for people and
for other tools. Chronicle checks every result it loads — every build does — so the
check must be cheap: a general validator (``jsonschema``) costs a build of this
repository's blog about 0.1 s of CPU, most of it importing. This one understands the
keywords the schema uses (:data:`KEYWORDS`) and refuses a schema that uses any other,
so an edit to the schema cannot be silently ignored; ``tests/lab/test_validate.py``
checks that it agrees with ``jsonschema`` on good and broken results.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "result.schema.json"
KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items",
                      "enum", "const", "pattern", "minimum", "minLength", "$ref"})
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description"})
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
}


@cache
def result_schema() -> Schema:
    return Schema(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


class Schema:
    def __init__(self, root: dict[str, Any]):
        self.root = root
        _check_keywords(root, "")

    def part(self, pointer: str) -> dict[str, Any]:
        """The sub-schema at a JSON pointer into the schema (``#/$defs/sample``)."""
        node: Any = self.root
        for name in pointer.removeprefix("#").strip("/").split("/"):
            if name:
                node = node[name]
        return node

    def problems(self, value: Any, pointer: str = "#") -> list[str]:
        """``<path>: <what>`` for each way ``value`` breaks the schema (or a part of it)."""
        found: list[str] = []
        for where, what in self._check(value, self.part(pointer), ""):
            problem = f"{where or '(top)'}: {what}"
            if problem not in found:
                found.append(problem)
        return found

    def _check(self, value: Any, schema: dict[str, Any], where: str
               ) -> Iterator[tuple[str, str]]:
        if "$ref" in schema:
            yield from self._check(value, self.part(schema["$ref"]), where)
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_TYPES[t](value) for t in types):
                yield where, f"{value!r} is not of type {', '.join(map(repr, types))}"
                return
        if "const" in schema and not _same(value, schema["const"]):
            yield where, f"{schema['const']!r} was expected, not {value!r}"
        if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
            yield where, f"{value!r} is not one of {schema['enum']!r}"
        if isinstance(value, str):
            if len(value) < schema.get("minLength", 0):
                yield where, f"{value!r} is shorter than {schema['minLength']} character(s)"
            if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
                yield where, f"{value!r} does not match {schema['pattern']!r}"
        if _TYPES["number"](value) and "minimum" in schema and value < schema["minimum"]:
            yield where, f"{value!r} is less than the minimum of {schema['minimum']!r}"
        if isinstance(value, dict):
            yield from self._check_object(value, schema, where)
        if isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                yield from self._check(item, schema["items"], _join(where, index))

    def _check_object(self, value: dict[str, Any], schema: dict[str, Any], where: str
                      ) -> Iterator[tuple[str, str]]:
        missing = [k for k in schema.get("required", ()) if k not in value]
        if missing:
            yield where, f"missing key(s) {', '.join(missing)}"
        known = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        unknown = sorted(str(k) for k in value if k not in known)
        if extra is False and unknown:
            yield where, f"unknown key(s) {', '.join(unknown)}"
        for key, item in value.items():
            if key in known:
                yield from self._check(item, known[key], _join(where, key))
            elif isinstance(extra, dict):
                yield from self._check(item, extra, _join(where, key))


def _check_keywords(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        return
    unknown = set(schema) - KEYWORDS - _ANNOTATIONS
    if unknown:
        raise ValueError(f"result schema at {where or '/'} uses {', '.join(sorted(unknown))}, "
                         "which chronicle.lab.schema does not check")
    for name in ("properties", "$defs"):
        for key, sub in schema.get(name, {}).items():
            _check_keywords(sub, f"{where}/{name}/{key}")
    for name in ("items", "additionalProperties"):
        _check_keywords(schema.get(name), f"{where}/{name}")


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1``, as it is in Python."""
    return (isinstance(a, bool), a) == (isinstance(b, bool), b)


@cache
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _join(where: str, key: str | int) -> str:
    return f"{where}/{key}" if where else str(key)
