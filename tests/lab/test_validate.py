"""``lab validate`` names every broken result file and says how it is broken."""

from __future__ import annotations

from chronicle.lab import runner
from chronicle.lab.results import validate_file, validate_store

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
    assert any(p.startswith("schema: status:") for p in problems)


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
