"""Experiment blocks, discovery, the cache key, staleness, and the helper API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from chronicle import lab
from chronicle.errors import LabError
from chronicle.lab import experiment as exp
from chronicle.lab import runner

from .conftest import cli_env

FAST = runner.RunOptions(grace=1.0)
EMIT_ONE = "from chronicle import lab\nlab.emit('a', 'm', 1, 'ms', 0)\n"


# -- the block ------------------------------------------------------------------------


def test_block_keys_are_read_with_defaults(site):
    site.script("e", EMIT_ONE, block="""
        title = "An experiment"
        tags = ["boot", "microvm"]
        inputs = ["experiments/guest/*.sh"]
        timeout = 30
        params = { memory_mib = 256 }
    """)
    e = site.experiment("e")
    assert (e.title, e.tags, e.inputs, e.timeout) == (
        "An experiment", ("boot", "microvm"), ("experiments/guest/*.sh",), 30.0)
    assert (e.repeat, e.warmup, e.params, e.env) == (10, 1, {"memory_mib": 256}, ())


def test_file_without_block_is_not_an_experiment(site):
    (site.root / "experiments" / "helper.py").write_text("print('not me')\n")
    (site.root / "experiments" / "README.md").write_text("# about\n")
    site.script("real", EMIT_ONE)
    assert [e.name for e in exp.discover(site.root)] == ["real"]


def test_unknown_key_is_an_error_naming_file_and_line(site):
    path = site.script("typo", EMIT_ONE, block='title = "x"\nrepeats = 3')
    with pytest.raises(LabError) as caught:
        exp.discover(site.root)
    assert caught.value.path == path and caught.value.line == 4
    assert "unknown key 'repeats'" in str(caught.value)


def test_bad_toml_is_an_error_naming_file_and_line(site):
    path = site.script("broken", EMIT_ONE, block='title = "x"\ntags = [boot')
    with pytest.raises(LabError) as caught:
        exp.discover(site.root)
    assert caught.value.path == path and caught.value.line == 4
    assert "bad TOML" in str(caught.value)


def test_wrong_type_is_an_error(site):
    site.script("wrong", EMIT_ONE, block="repeat = 0")
    with pytest.raises(LabError, match="repeat must be an integer"):
        exp.discover(site.root)


def test_unclosed_block_is_an_error(site):
    (site.root / "experiments" / "open.py").write_text("# /// chronicle\n# title = 'x'\n")
    with pytest.raises(LabError, match="never closed"):
        exp.discover(site.root)


def test_select_by_tag_and_unknown_name(site):
    site.script("a", EMIT_ONE, block='tags = ["x"]')
    site.script("b", EMIT_ONE, block='tags = ["y"]')
    found = exp.discover(site.root)
    assert [e.name for e in exp.select(found, tags=["y"])] == ["b"]
    with pytest.raises(LabError, match=r"unknown experiment\(s\): c \(valid: a, b\)"):
        exp.select(found, ["c"])


# -- key and staleness ---------------------------------------------------------------


def test_key_changes_with_script_and_params_but_not_with_whitespace_elsewhere(site):
    path = site.script("k", EMIT_ONE, block="params = { n = 1 }")
    before = exp.key_parts(site.experiment("k"), include_environment=False)
    (site.root / "posts").mkdir()
    (site.root / "posts" / "p.md").write_text("prose that must not matter\n")
    assert exp.key_parts(site.experiment("k"), include_environment=False) == before
    path.write_text(path.read_text().replace("n = 1", "n = 2"))
    after = exp.key_parts(site.experiment("k"), include_environment=False)
    assert after["params"] != before["params"] and after["script"] != before["script"]


def test_fresh_result_has_no_staleness_reasons(site):
    site.script("f", EMIT_ONE)
    result = runner.run(site.experiment("f"), site.store(), FAST)
    assert exp.staleness(site.experiment("f"), result) == []
    assert exp.freshness(site.experiment("f"), site.store()).state == "fresh"


def test_editing_the_script_makes_the_result_stale(site):
    path = site.script("s", EMIT_ONE)
    result = runner.run(site.experiment("s"), site.store(), FAST)
    path.write_text(path.read_text() + "# a change\n")
    assert exp.staleness(site.experiment("s"), result, include_environment=False) == [
        "script changed"]


def test_editing_an_input_makes_the_result_stale_and_names_it(site):
    guest = site.root / "experiments" / "guest"
    guest.mkdir()
    (guest / "init.sh").write_text("echo one\n")
    (guest / "other.sh").write_text("echo two\n")
    site.script("i", EMIT_ONE, block='inputs = ["experiments/guest/*.sh"]')
    result = runner.run(site.experiment("i"), site.store(), FAST)
    (guest / "init.sh").write_text("echo changed\n")
    assert exp.staleness(site.experiment("i"), result, include_environment=False) == [
        "input changed: experiments/guest/init.sh"]
    state = exp.freshness(site.experiment("i"), site.store())
    assert state.state == "stale" and "input changed: experiments/guest/init.sh" in state.reasons


def test_a_guest_the_params_name_is_an_input_with_the_files_it_places(site):
    guests = site.root / "experiments" / "guests"
    (guests / "web").mkdir(parents=True)
    (guests / "web" / "index.html").write_text("<p>one</p>\n")
    (guests / "web.toml").write_text(GUEST_TOML)
    (guests / "other.toml").write_text(GUEST_TOML.replace("nginx-light", "nginx"))
    site.script("g", EMIT_ONE, block='params = { guest = "web" }')
    result = runner.run(site.experiment("g"), site.store(), FAST)
    assert exp.staleness(site.experiment("g"), result, include_environment=False) == []
    (guests / "other.toml").write_text(GUEST_TOML.replace("nginx-light", "apache2"))
    assert exp.staleness(site.experiment("g"), result, include_environment=False) == []
    (guests / "web" / "index.html").write_text("<p>two</p>\n")
    assert exp.staleness(site.experiment("g"), result, include_environment=False) == [
        "input changed: experiments/guests/web/index.html"]
    (guests / "web.toml").write_text(GUEST_TOML.replace("nginx-light", "nginx-full"))
    assert "input changed: experiments/guests/web.toml" in exp.staleness(
        site.experiment("g"), result, include_environment=False)


GUEST_TOML = """\
suite = "bookworm"
packages = ["nginx-light"]

[app]
service = "nginx.service"
port = 80
url = "/"

[[files]]
path = "/var/www/html/index.html"
source = "web/index.html"
"""


def test_changed_environment_is_reported_as_such(site):
    site.script("env", EMIT_ONE)
    result = runner.run(site.experiment("env"), site.store(), FAST)
    parts = {**result.key_parts, "environment": "0" * 64}
    old = type(result)(**{**result.__dict__, "key_parts": parts})
    reasons = exp.staleness(site.experiment("env"), old)
    assert len(reasons) == 1 and reasons[0].startswith("environment changed")
    assert exp.staleness(site.experiment("env"), old, include_environment=False) == []


def test_failed_latest_run_shows_as_failed(site):
    site.script("bad", "exit 4\n", suffix=".sh")
    runner.run(site.experiment("bad"), site.store(), FAST)
    state = exp.freshness(site.experiment("bad"), site.store())
    assert state.state == "failed" and "exit status 4" in state.reasons[0]


def test_never_run(site):
    site.script("n", EMIT_ONE)
    assert exp.freshness(site.experiment("n"), site.store()).state == "never run"


# -- the helper API ------------------------------------------------------------------


def test_plan_reads_the_environment():
    p = lab.plan({"CHRONICLE_REPEAT": "4", "CHRONICLE_WARMUP": "2", "CHRONICLE_QUICK": "1",
                  "CHRONICLE_SCRATCH": "/tmp", "CHRONICLE_PARAMS": '{"a": 1}',
                  "CHRONICLE_SEED": "7"})
    assert (p.repeat, p.warmup, p.quick, str(p.scratch), p.params, p.seed) == (
        4, 2, True, "/tmp", {"a": 1}, 7)


def test_emit_prints_one_flushed_json_line(capsys):
    lab.emit("vm", "boot_ms", 412.5, "ms", 3, phase="kernel", meta={"k": "v"})
    line = capsys.readouterr().out
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == {"subject": "vm", "metric": "boot_ms", "value": 412.5,
                                "unit": "ms", "run": 3, "phase": "kernel", "meta": {"k": "v"}}
    assert runner.parse_line(line.strip()).phase == "kernel"


def test_report_subject_is_a_provenance_line(capsys):
    lab.report_subject("qemu-microvm", accelerator="tcg", kvm_kind="pvm")
    assert runner.parse_line(capsys.readouterr().out.strip()) == {
        "subjects": {"qemu-microvm": {"accelerator": "tcg", "kvm_kind": "pvm"}}}


def test_abba_schedule_alternates_and_puts_warmups_first():
    steps = lab.schedule(["A", "B"], repeat=3, warmup=1, order="abba")
    assert steps == [(0, "A", True), (0, "B", True), (0, "A", False), (0, "B", False),
                     (1, "B", False), (1, "A", False), (2, "A", False), (2, "B", False)]


def test_shuffle_schedule_interleaves_each_round_and_is_seeded():
    steps = lab.schedule(["A", "B", "C"], repeat=20, seed=5)
    assert steps == lab.schedule(["A", "B", "C"], repeat=20, seed=5)
    for run in range(20):
        assert sorted(s for r, s, _ in steps if r == run) == ["A", "B", "C"]
    orders = {tuple(s for r, s, _ in steps if r == run) for run in range(20)}
    assert len(orders) > 1


def test_measure_emits_what_each_subject_returns(capsys):
    plan = lab.Plan(repeat=2, warmup=1)
    lab.measure({"A": lambda: {"m": (1.0, "ms")}, "B": lambda: {"m": (2.0, "ms")}}, plan=plan)
    samples = [runner.parse_line(x) for x in capsys.readouterr().out.splitlines()]
    assert len(samples) == 6 and sum(s.warmup for s in samples) == 2
    assert {s.value for s in samples if s.subject == "B"} == {2.0}


def test_cleanup_runs_on_sigterm(tmp_path):
    marker = tmp_path / "cleaned"
    script = tmp_path / "s.py"
    script.write_text(
        "import time, pathlib\nfrom chronicle import lab\n"
        "with lab.cleanup() as stack:\n"
        f"    stack.callback(pathlib.Path({str(marker)!r}).write_text, 'yes')\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=cli_env())
    assert proc.stdout.readline().strip() == b"ready"
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    assert marker.read_text() == "yes"
