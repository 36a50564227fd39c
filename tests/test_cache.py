"""The build caches only ever cost or save time: a cached build equals a cold one."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from chronicle.build import BuildOptions, build
from chronicle.cache import Cache, digest
from chronicle.hooks import standard_hooks
from tests.conftest import post_text, write

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def run(root: Path, **kwargs):
    return build(standard_hooks(BuildOptions(root=root, now=NOW, **kwargs)))


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_warm_build_equals_cold_build(site_root):
    write(site_root / "posts" / "2025-05-01-code.md",
          post_text("Code", "2025-05-01", body="```python linenos\nprint(1)\n```\n"))
    run(site_root)
    cold = tree(site_root / "output")
    shutil.rmtree(site_root / "output")  # the cache stays: every body comes from it
    run(site_root)
    assert tree(site_root / "output") == cold


def test_deleting_the_cache_folder_changes_nothing_but_time(site_root):
    run(site_root)
    before = tree(site_root / "output")
    shutil.rmtree(site_root / ".chronicle")
    report = run(site_root)
    assert tree(site_root / "output") == before
    assert report.written == report.files  # no manifest either: a full build, same bytes


def test_rendered_bodies_are_cached_by_content(site_root):
    run(site_root)
    cache = Cache(site_root / ".chronicle")
    assert cache._conn().execute("SELECT count(*) FROM kv WHERE ns = 'html'").fetchone()[0] == 4


def test_file_hash_sees_an_edit_in_the_same_second(tmp_path):
    path = tmp_path / "a.md"
    path.write_text("one")
    cache = Cache(tmp_path / ".chronicle")
    first = cache.file_hash(path)
    cache.flush()
    path.write_text("two")  # same size, same second
    assert Cache(tmp_path / ".chronicle").file_hash(path) != first


def test_file_hash_trusts_an_old_unchanged_file_without_reading_it(tmp_path):
    path = tmp_path / "a.md"
    path.write_text("one")
    old = time.time() - 60
    import os

    os.utime(path, (old, old))
    cache = Cache(tmp_path / ".chronicle")
    first = cache.file_hash(path)
    cache.flush()
    path.chmod(0o000)  # unreadable: only the stat cache can answer
    try:
        assert Cache(tmp_path / ".chronicle").file_hash(path) == first
    finally:
        path.chmod(0o644)


def test_a_new_code_version_renders_again(site_root, monkeypatch):
    run(site_root)
    from chronicle import cache as cache_module

    monkeypatch.setattr(cache_module, "code_version", lambda: "another chronicle")
    monkeypatch.setattr("chronicle.build.code_version", lambda: "another chronicle")
    report = run(site_root)
    assert report.written == 0  # same bytes: re-rendered, compared, not rewritten


def test_workers_see_what_the_parent_stores_after_an_earlier_pool(tmp_path, monkeypatch):
    # Guards the rule in Cache._conn (a worker never closes its copy of the parent's
    # connection). Breaking it lost bodies to the search workers of a 10,000-post
    # build; this small case does not always fail without the rule, but must pass.
    from chronicle import parallel

    monkeypatch.setenv("CHRONICLE_JOBS", "2")
    cache = Cache(tmp_path / "cache")
    for n in range(200):
        cache.put("t", f"k{n}", b"x" * 5000)
    cache.put("t", "first", 1)
    cache.flush()
    assert cache.get("t", "first") == 1  # the parent now holds a read transaction

    def read(key: str) -> list:
        return parallel.map_chunks(lambda idx: [cache.get("t", key) for _ in idx], 64,
                                   minimum=1)

    for round_ in range(5):
        assert set(read("first")) == {1}
        cache.put("t", f"second{round_}", 2)
        cache.flush()
        assert cache.get("t", "first") == 1
        assert set(read(f"second{round_}")) == {2}
    cache.close()


def test_digest_of_text_hashes_each_part_followed_by_a_nul():
    import hashlib

    for parts in [(), ("",), ("a", "b"), ("é", "\ud800"), ("x", b"y")]:
        h = hashlib.sha1()
        for part in parts:
            h.update(part if isinstance(part, bytes) else part.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        assert digest(*parts) == h.hexdigest()


def test_front_matter_from_the_cache_equals_a_fresh_read(site_root, monkeypatch):
    import os

    from chronicle import content
    from chronicle.config import load_config
    from chronicle.content import gather_docs
    from chronicle.paths import SitePaths

    write(site_root / "posts" / "2025-05-01-tagged.md",
          post_text("Tagged", "2025-05-01", tags="[nix, incus]", summary="Short.",
                    updated="2025-06-01", toc="true"))
    old = time.time() - 60  # outside the racy window: the stat cache may vouch for them
    for path in site_root.rglob("*.md"):  # posts and pages
        os.utime(path, (old, old))
    paths = SitePaths(site_root)
    config = load_config(paths.config)
    fresh, _ = gather_docs(paths, config, Cache(paths.cache, enabled=False))
    first = Cache(paths.cache)
    gather_docs(paths, config, first)
    first.flush()
    first.close()
    again = Cache(paths.cache)

    def no_read(path, *args, **kwargs):
        raise AssertionError(f"{path} was read: not from the cache")

    monkeypatch.setattr(content, "read_stamped", no_read)
    cached, _ = gather_docs(paths, config, again)
    again.close()
    assert [(d.doc, d.hash) for d in cached] == [(d.doc, d.hash) for d in fresh]


def test_a_cache_file_of_an_older_layout_is_emptied_and_used(tmp_path):
    import sqlite3

    old = sqlite3.connect(tmp_path / "cache.sqlite")
    old.execute("CREATE TABLE kv (ns TEXT, key TEXT, value BLOB, PRIMARY KEY (ns, key)) "
                "WITHOUT ROWID")
    old.execute("INSERT INTO kv VALUES ('body', 'k', x'00')")
    old.commit()
    old.close()
    cache = Cache(tmp_path)
    assert cache.get("body", "k") is None
    cache.put("body", "k", ("fresh",))
    cache.flush()
    cache.close()
    again = Cache(tmp_path)
    assert again.get("body", "k") == ("fresh",)
    again.close()


def test_a_clean_build_reads_back_what_it_stored_itself_and_nothing_older(tmp_path):
    # --clean (read=False) ignores what earlier builds stored, but a value this build
    # stored stays readable after it is flushed: get and get_many alike
    old = Cache(tmp_path / "cache")
    old.put("ns", "old", 1)
    old.flush()
    old.close()
    clean = Cache(tmp_path / "cache", read=False)
    clean.put("ns", "new", 2)
    clean.flush()
    assert clean.get("ns", "new") == 2 and clean.get("ns", "old") is None
    assert clean.get_many("ns", ["old", "new"]) == {"new": 2}
    clean.close()
