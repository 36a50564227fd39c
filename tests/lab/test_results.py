"""The store as the runner leaves it: canonical files, ordering, latest good."""

from __future__ import annotations

from chronicle.lab import runner
from chronicle.lab.results import Result, ResultStore, Sample, canonical_json

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


def test_only_warmups_is_a_failed_run(site):
    site.script("ow", "from chronicle import lab\nlab.emit('a', 'm', 9, 'ms', 0, warmup=True)\n")
    result = runner.run(site.experiment("ow"), site.store(), OPTIONS)
    assert result.status == "failed"


def test_the_blog_shows_the_newest_full_run_over_a_newer_quick_one(tmp_path):
    store = ResultStore(tmp_path)

    def run(stamp: str, *, quick: bool, status: str = "ok") -> Result:
        result = Result("e", f"2026112{stamp}T000000Z-00000000", status, "k", {}, {}, {},
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
