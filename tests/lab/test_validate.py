"""``lab validate`` names every broken result file and says how it is broken."""

from __future__ import annotations

from datetime import UTC, datetime

from chronicle.lab import runner
from chronicle.lab.validation import (
    CLOCK_SKEW,
    is_duration,
    result_problems,
    sample_problems,
    validate_file,
    validate_store,
)
from tests.support import history_run, in_the_future, make_result, store_edited

EMIT = "from chronicle import lab\nlab.emit('a', 'm', 1.5, 'ms', 0)\n"


def _stored(site, name="v"):
    site.script(name, EMIT)
    result = runner.run(site.experiment(name), site.store(), runner.RunOptions())
    return result.path


def test_a_fresh_result_is_valid(site):
    assert validate_file(_stored(site)) == []
    assert validate_store(site.results) == {}


def test_truncated_file_is_found(site):
    path = _stored(site)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    (problem,) = validate_file(path)
    assert problem.startswith("truncated")


def test_corrupt_json_is_found_with_its_line(site):
    path = _stored(site)
    path.write_text(path.read_text().replace('"status"', "status", 1))
    (problem,) = validate_file(path)
    assert problem.startswith("corrupt JSON at line")


def test_merge_conflict_markers_are_found(site):
    path = _stored(site)
    lines = path.read_text().splitlines(keepends=True)
    conflicted = ["<<<<<<< HEAD\n", *lines, "=======\n", *lines, ">>>>>>> other\n"]
    path.write_text("".join(conflicted))
    (problem,) = validate_file(path)
    assert problem.startswith("merge conflict markers at line(s) 1,")


def test_schema_violation_names_the_field(site):
    path = _stored(site)
    path.write_text(path.read_text().replace('"status": "ok"', '"status": "great"'))
    problems = validate_file(path)
    assert any(p.startswith("status: ") for p in problems)


def test_file_renamed_away_from_its_id_is_found(site):
    path = _stored(site)
    path.rename(path.with_name("20000101T000000Z-00000000.json"))
    (problem,) = validate_file(path.with_name("20000101T000000Z-00000000.json"))
    assert "does not match the file name" in problem


def test_cli_names_each_bad_file_and_exits_one(site):
    good = _stored(site, "good")
    bad = _stored(site, "bad")
    bad.write_text("{")
    done = site.chronicle("lab", "validate")
    assert done.returncode == 1
    assert str(bad.relative_to(site.root)) in done.stderr
    assert str(good.relative_to(site.root)) not in done.stderr
    assert "2 result file(s), 1 with problems" in done.stdout


def test_cli_exits_zero_on_a_clean_store(site):
    _stored(site)
    assert site.chronicle("lab", "validate").returncode == 0


# -- the rules a schema cannot say ------------------------------------------------------

def _edited(site, old="", new="", **result):
    return store_edited(site.root, make_result(**result), old, new)


def test_nan_and_infinity_are_found_with_their_json_path(site):
    path = _edited(site, '"value": 2510.0', '"value": NaN')
    assert validate_file(path) == ["samples/1/value: nan is not a finite number"]
    path = _edited(site, '"cores": 2', '"cores": Infinity', experiment="other")
    assert any(p.startswith("provenance/host/cores: ") for p in validate_file(path))


def test_a_negative_duration_is_found(site):
    path = _edited(site, '"value": 2510.0', '"value": -2510.0')
    assert validate_file(path) == [
        "samples/1/value: -2510.0 ms is a negative duration (metric boot_ms)"]


def test_a_duration_is_known_by_its_metric_name_too():
    assert is_duration("boot_ms", "") and is_duration("wait_s", "x")
    assert is_duration("t", "µs") and not is_duration("pss_mib", "MiB")
    assert not sample_problems({"subject": "a", "metric": "delta", "value": -1.0, "unit": "",
                                "run": 0})


def test_a_run_started_in_the_future_is_found(site):
    started = in_the_future(days=3)
    path = _edited(site, started=started)
    (problem,) = validate_file(path)
    assert problem.startswith(f"provenance/started: {started[:19]}Z is 3 days in the future")


def test_a_start_within_the_clock_skew_is_valid(site):
    started = (datetime.now(UTC) + CLOCK_SKEW / 2).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert validate_file(_edited(site, started=started)) == []


def test_a_wrong_type_where_the_code_reads_provenance_is_found(site):
    path = _edited(site, '"memory_bytes": 17179869184', '"memory_bytes": "16 GiB"')
    assert validate_file(path) == [
        "provenance/host/memory_bytes: '16 GiB' is not of type 'integer', 'null'"]


def test_cli_names_a_file_with_nan_and_exits_one(site):
    path = _edited(site, '"value": 2510.0', '"value": NaN')
    done = site.chronicle("lab", "validate")
    assert done.returncode == 1
    assert f"{path.relative_to(site.root)}: samples/1/value: nan is not a finite" in done.stderr


def test_a_repeat_must_name_an_earlier_run():
    first = history_run("2026-11-01T10:00:00Z", {"vm": [1.0, 2.0]})
    again = history_run("2026-11-02T10:00:00Z", {"vm": [1.0, 2.0]}, repeats=first.id)
    assert result_problems(again.to_json()) == []
    backwards = history_run("2026-10-01T10:00:00Z", {"vm": [1.0, 2.0]}, repeats=first.id)
    assert result_problems(backwards.to_json()) == [
        f"provenance/repeats: {first.id!r} is not an earlier run than {backwards.id!r}"]
    garbled = {**again.to_json(), "provenance": {**again.provenance, "repeats": "yesterday"}}
    (problem,) = result_problems(garbled)
    assert problem.startswith("provenance/repeats: 'yesterday' does not match")
