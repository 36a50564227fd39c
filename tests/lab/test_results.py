"""The store as the runner leaves it: canonical files, ordering, latest good."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import io
import json
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from chronicle import lab
from chronicle.errors import LabError
from chronicle.lab import experiment as exp
from chronicle.lab import provenance, runner
from chronicle.lab.results import (
    SAMPLE_COLUMNS,
    Result,
    ResultStore,
    Sample,
    canonical_json,
    samples_csv,
)
from chronicle.lab.validation import load_schema, result_problems
from tests.support import REPO, in_the_future, make_result, store_edited

OPTIONS = runner.RunOptions(grace=1.0)
EMIT = "from chronicle import lab\nlab.emit('a', 'm', 0.1 + 0.2, 'ms', 0)\n"


def test_stored_file_is_canonical_and_round_trips(site):
    site.script("c", EMIT)
    result = runner.run(site.experiment("c"), site.store(), OPTIONS)
    raw = result.path.read_bytes()
    loaded = ResultStore(site.results).load(result.path)
    assert canonical_json(loaded.to_json()) == raw and raw.endswith(b"}\n")
    assert loaded.values("a", "m") == [0.3]
    assert loaded == Result.from_json(loaded.to_json())


def test_runs_are_listed_oldest_first_even_within_a_second(site):
    site.script("o", EMIT)
    ids = [runner.run(site.experiment("o"), site.store(), OPTIONS).id for _ in range(3)]
    assert [r.id for r in ResultStore(site.results).runs("o")] == ids
    assert len(set(ids)) == 3


def test_cancelled_and_failed_runs_are_kept_but_not_latest(site):
    path = site.script("k", EMIT)
    good = runner.run(site.experiment("k"), site.store(), OPTIONS)
    path.write_text(path.read_text() + "raise SystemExit(1)\n")
    runner.run(site.experiment("k"), site.store(), OPTIONS)
    store = ResultStore(site.results)
    assert [r.status for r in store.runs("k")] == ["ok", "failed"]
    assert store.latest("k").id == good.id
    assert store.latest("k", status=("failed", "cancelled")).status == "failed"


def test_warmups_are_stored_but_not_measured(site):
    site.script("w", """
        from chronicle import lab
        lab.emit('a', 'm', 9, 'ms', 0, warmup=True)
        lab.emit('a', 'm', 1, 'ms', 0)
    """)
    result = runner.run(site.experiment("w"), site.store(), OPTIONS)
    assert len(result.samples) == 2 and result.values("a", "m") == [1]


def test_values_are_each_subject_s_in_run_order_and_the_caller_s_to_keep():
    result = make_result(n=3)
    assert result.values("qemu-microvm", "boot_ms") == [2510.0, 2520.0, 2530.0]
    assert result.values("incus-container", "pss_mib") == [2.51, 2.52, 2.53]
    assert result.values("incus-container", "nothing") == []
    result.values("qemu-microvm", "boot_ms").clear()
    assert result.values("qemu-microvm", "boot_ms") == [2510.0, 2520.0, 2530.0]


def test_only_warmups_is_a_failed_run(site):
    site.script("ow", "from chronicle import lab\nlab.emit('a', 'm', 9, 'ms', 0, warmup=True)\n")
    result = runner.run(site.experiment("ow"), site.store(), OPTIONS)
    assert result.status == "failed"


def test_the_blog_shows_the_newest_full_run_over_a_newer_quick_one(tmp_path):
    store = ResultStore(tmp_path)

    def run(stamp: str, *, quick: bool, status: str = "ok") -> Result:
        result = Result("e", f"2026112{stamp}T000000Z-00000000", status, "0" * 64, {}, {}, {},
                        (Sample("a", "m", 1.0, "ms", 0),), quick=quick)
        store.write(result)
        return result

    assert store.shown("e") is None
    first_quick = run("1", quick=True)
    assert store.shown("e").id == first_quick.id  # nothing better yet: shown, badged quick
    full = run("2", quick=False)
    run("3", quick=True)
    run("4", quick=False, status="failed")
    assert store.shown("e").id == full.id


def test_a_bad_file_is_left_out_of_the_runs_and_named(site):
    good = make_result(started="2026-11-20T10:00:00.000000Z")
    ResultStore(site.results).write(good)
    bad = store_edited(site.root, make_result(started="2026-11-21T10:00:00.000000Z"),
                       '"value": 2510.0', '"value": NaN')
    store = ResultStore(site.results)
    assert [r.id for r in store.runs("boot-to-init")] == [good.id]
    (found,) = store.bad_files("boot-to-init", newer_than=good)
    assert found.path == bad and found.summary == "samples/1/value: nan is not a finite number"
    with pytest.raises(LabError, match="not a valid result: samples/1/value") as caught:
        store.load(bad)
    assert caught.value.path == bad


def test_the_store_refuses_to_write_an_invalid_result(tmp_path):
    negative = Sample("a", "boot_ms", -1.0, "ms", 0)
    result = replace(make_result(), samples=(negative,))
    with pytest.raises(LabError, match="negative duration"):
        ResultStore(tmp_path).write(result)
    assert not list(tmp_path.rglob("*.json"))


def test_a_new_id_is_dated_after_a_future_dated_one_without_waiting(site):
    ahead = make_result(started=in_the_future(days=1))
    store_edited(site.root, ahead)
    store = ResultStore(site.results)
    new = store.new_id("boot-to-init", provenance.utc_now(), "f" * 64)
    assert new > ahead.id and new[16:] == "-ffffffff"
    assert new[:16] == (datetime.strptime(ahead.id[:16], "%Y%m%dT%H%M%SZ")
                        + timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")


# Every field away from its default: a field added to Sample must be added here too.
EVERY_FIELD = Sample(subject="qemu-microvm", metric="boot_ms", value=412.5, unit="ms", run=3,
                     phase="kernel", warmup=True, meta={"console": "ttyS0"})
JSON_TYPES = {"str": "string", "float": "number", "int": "integer", "bool": "boolean",
              "str | None": ["string", "null"], "dict[str, Any]": "object"}


def test_the_example_sample_sets_every_field():
    for f in dataclasses.fields(Sample):
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        assert getattr(EVERY_FIELD, f.name) != default, f.name


def test_the_schema_says_what_the_sample_fields_say():
    schema = load_schema()["$defs"]["sample"]
    fields = dataclasses.fields(Sample)
    assert [f.name for f in fields] == list(schema["properties"])
    assert [f.name for f in fields if f.default is f.default_factory is dataclasses.MISSING] \
        == schema["required"]
    assert {f.name: JSON_TYPES[f.type] for f in fields} == \
        {name: spec["type"] for name, spec in schema["properties"].items()}


def test_a_sample_round_trips_through_its_stored_form():
    assert Sample.from_json(json.loads(json.dumps(EVERY_FIELD.to_json()))) == EVERY_FIELD
    assert result_problems({**make_result().to_json(), "samples": [EVERY_FIELD.to_json()]}) == []


def test_lab_emit_takes_every_field_and_prints_the_sample(capsys):
    parameters = inspect.signature(lab.emit).parameters
    assert list(parameters) == [f.name for f in dataclasses.fields(Sample)]
    for f in dataclasses.fields(Sample):
        required = f.default is f.default_factory is dataclasses.MISSING
        assert (parameters[f.name].default is inspect.Parameter.empty) == required, f.name
    lab.emit(**{f.name: getattr(EVERY_FIELD, f.name) for f in dataclasses.fields(Sample)})
    assert runner.parse_line(capsys.readouterr().out) == EVERY_FIELD


def test_the_csv_has_a_column_for_every_field_but_meta():
    result = replace(make_result(), samples=(EVERY_FIELD, Sample("a", "m", 0.1 + 0.2, "ms", 0)))
    rows = list(csv.reader(io.StringIO(samples_csv(result))))
    assert rows == [["subject", "metric", "value", "unit", "run", "phase", "warmup"],
                    ["qemu-microvm", "boot_ms", "412.5", "ms", "3", "kernel", "true"],
                    ["a", "m", "0.30000000000000004", "ms", "0", "", "false"]]
    assert tuple(rows[0]) == SAMPLE_COLUMNS


def test_every_committed_result_loads_and_serialises_to_its_own_bytes():
    files = sorted((REPO / "experiments" / "results").glob("*/*.json"))
    assert files
    for path in files:
        result = ResultStore(path.parent.parent).load(path)
        assert canonical_json(result.to_json()) == path.read_bytes(), path


def test_experiment_names_are_defined_alike_by_the_schema_and_discovery():
    assert exp.NAME.pattern == load_schema()["properties"]["experiment"]["pattern"]
