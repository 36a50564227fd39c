"""Parallel rendering gives exactly the serial output, in the same order."""

from __future__ import annotations

import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chronicle import parallel
from chronicle.build import BuildOptions, build
from tests.conftest import post_text, write
from tests.support import (
    build_command,
    build_env,
    corpus_site,
    kill_all,
    left_running,
    reaches_eof,
    tree,
    wait_for_children,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def many_posts(root: Path, count: int) -> None:
    for i in range(count):
        write(root / "posts" / f"2025-01-{1 + i % 28:02d}-post-{i}.md",
              post_text(f"Post {i}", f"2025-01-{1 + i % 28:02d}", tags=f"[t{i % 3}]",
                        body=f"## Part {i}\n\nText {i}.\n\n```bash\necho {i}\n```\n"))


def test_map_chunks_keeps_index_order_across_workers(monkeypatch):
    monkeypatch.setenv("CHRONICLE_JOBS", "2")
    assert parallel.map_chunks(lambda idx: [i * i for i in idx], 100, minimum=1) == \
        [i * i for i in range(100)]


def test_parallel_build_equals_serial_build(site_root, tmp_path, monkeypatch):
    many_posts(site_root, 40)
    monkeypatch.setenv("CHRONICLE_JOBS", "1")
    build(BuildOptions(root=site_root, now=NOW, out=tmp_path / "serial"))
    monkeypatch.setenv("CHRONICLE_JOBS", "2")
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 1)
    build(BuildOptions(root=site_root, now=NOW, out=tmp_path / "parallel", clean=True))
    assert tree(tmp_path / "parallel") == tree(tmp_path / "serial")


def test_parallel_build_reports_every_bad_post(site_root, monkeypatch):
    import pytest

    from chronicle.errors import BuildErrors

    many_posts(site_root, 10)
    for name in ("a", "b"):
        write(site_root / "posts" / f"2025-02-01-{name}.md",
              post_text(name, "2025-02-01", body="```python hl_lines=x\n1\n```\n"))
    # and two whose front matter is bad: read in the workers too
    write(site_root / "posts" / "2025-02-02-c.md", "---\ntitle: [unclosed\ndate: 2025-02-02\n---\n")
    write(site_root / "posts" / "2025-02-03-d.md", "---\ndate: 2025-02-03\n---\n")
    monkeypatch.setenv("CHRONICLE_JOBS", "2")
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 1)
    with pytest.raises(BuildErrors) as caught:
        build(BuildOptions(root=site_root, now=NOW))
    reported = sorted(str(e) for e in caught.value.errors)
    assert len(reported) == 4
    assert any("2025-02-02-c.md:3: YAML error" in e for e in reported)
    assert any("2025-02-03-d.md" in e and "title" in e for e in reported)


def test_chunks_stay_in_order_when_the_parent_outpaces_its_worker(monkeypatch):
    import os
    import time

    parent = os.getpid()

    def work(indices):
        if os.getpid() != parent:
            time.sleep(0.01)  # the forked worker is the slow one
        return list(indices)

    monkeypatch.setenv("CHRONICLE_JOBS", "2")
    assert parallel.map_chunks(work, 600, minimum=1) == list(range(600))


def test_one_core_works_chunk_by_chunk_too(monkeypatch):
    # a 10,000-post build on one core must not hold every rendered body at once
    monkeypatch.setenv("CHRONICLE_JOBS", "1")
    calls: list[int] = []

    def work(indices):
        calls.append(len(indices))
        return list(indices)

    assert parallel.map_chunks(work, 1000) == list(range(1000))
    assert len(calls) > 1 and max(calls) <= parallel.MAX_CHUNK


def test_guided_chunks_cover_every_item_once_and_shrink_towards_the_end():
    for count in (1, 7, 200, 201, 1000, 10_000):
        chunks = parallel._guided_chunks(count, jobs=2)
        assert [i for chunk in chunks for i in chunk] == list(range(count))
        sizes = [len(chunk) for chunk in chunks]
        assert sizes == sorted(sizes, reverse=True)
        assert max(sizes) <= parallel.MAX_CHUNK
        assert all(size >= parallel.MIN_CHUNK for size in sizes[:-1])
    assert len(parallel._guided_chunks(10_000, jobs=2)[0]) == parallel.MAX_CHUNK
    assert len(parallel._guided_chunks(10_000, jobs=2)[-2]) == parallel.MIN_CHUNK


def test_the_result_pipe_is_widened_where_linux_allows():
    import fcntl
    import multiprocessing

    queue = multiprocessing.get_context("fork").SimpleQueue()
    parallel._widen_pipe(queue)
    limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    size = fcntl.fcntl(queue._reader.fileno(), fcntl.F_GETPIPE_SZ)
    assert size == min(parallel.RESULT_PIPE_BYTES, limit) or (
        limit < parallel.RESULT_PIPE_BYTES and size < parallel.RESULT_PIPE_BYTES)
    parallel._widen_pipe(object())  # no pipe to widen: nothing happens
    queue.close()


def test_big_results_stop_the_parent_from_running_far_ahead_of_a_slow_worker(monkeypatch):
    # rendered bodies are ~1 MB a chunk: unless told the results are small, this process
    # holds at most a few finished chunks while it waits for an earlier one
    import os
    import time

    parent = os.getpid()
    ran_here: list[int] = []

    def work(indices):
        if os.getpid() != parent:
            time.sleep(0.2)  # the forked worker is very slow
        else:
            ran_here.append(indices[0])
        return list(indices)

    monkeypatch.setenv("CHRONICLE_JOBS", "2")
    for small, most in ((False, parallel.QUEUED_PER_WORKER + 1), (True, None)):
        ran_here.clear()
        results = parallel.iter_chunks(work, 400, minimum=1, small=small)
        assert next(results) == 0
        if most is not None:
            assert len(ran_here) <= most
        else:
            assert len(ran_here) > parallel.QUEUED_PER_WORKER + 1
        assert [0, *results] == list(range(400))


def test_workers_fork_from_a_frozen_heap_and_a_build_restores_the_collector(site_root,
                                                                           monkeypatch):
    import gc

    monkeypatch.setenv("CHRONICLE_JOBS", "2")
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 1)
    gc.unfreeze()
    # what each worker sees: the objects this process had when it forked stay out of
    # the worker's collections (and so out of its copy-on-write pages)
    seen = parallel.map_chunks(lambda idx: [gc.get_freeze_count() for _ in idx], 400)
    assert min(seen) > 0
    assert gc.get_freeze_count() == 0  # thawed here once the pool is done

    many_posts(site_root, 30)
    thresholds = gc.get_threshold()
    inside: list[tuple[int, ...]] = []
    monkeypatch.setattr(parallel, "_guided_chunks",
                        lambda count, jobs, real=parallel._guided_chunks:
                        inside.append(gc.get_threshold()) or real(count, jobs))
    build(BuildOptions(root=site_root, now=NOW))
    assert gc.get_freeze_count() == 0  # a live preview builds again and again
    # young collections wait while it builds, and the settings are back after
    assert inside and all(t[0] >= parallel.YOUNG_THRESHOLD for t in inside)
    assert gc.get_threshold() == thresholds

    gc.freeze()  # a caller that froze its objects itself keeps them so
    try:
        build(BuildOptions(root=site_root, now=NOW, clean=True))
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_meanwhile_runs_once_in_this_process_before_the_first_result(monkeypatch):
    import os

    parent = os.getpid()

    def events_of(count: int) -> list[str]:
        events: list[str] = []

        def meanwhile() -> None:
            events.append("meanwhile" if os.getpid() == parent else "worker")

        for _ in parallel.iter_chunks(lambda idx: list(idx), count, minimum=1,
                                      meanwhile=meanwhile):
            events.append("result")
        return events

    for jobs, count in (("2", 400), ("1", 400), ("2", 0)):
        monkeypatch.setenv("CHRONICLE_JOBS", jobs)
        assert events_of(count) == ["meanwhile"] + ["result"] * count


def test_workers_keep_working_while_this_process_does_its_meanwhile_work(monkeypatch,
                                                                         tmp_path):
    # a new result re-renders a thousand pages while this process makes the search index
    # and the lab pages (~1 s): with four chunks queued the worker ran dry after 0.2 s
    import os
    import time

    parent = os.getpid()
    log = tmp_path / "chunks"
    log.touch()

    def work(indices):
        if os.getpid() != parent:
            with log.open("a") as handle:
                handle.write(f"{indices[0]}\n")
        return list(indices)

    def meanwhile() -> None:
        deadline = time.monotonic() + 10
        while len(log.read_text().split()) < 12 and time.monotonic() < deadline:
            time.sleep(0.01)

    monkeypatch.setenv("CHRONICLE_JOBS", "2")
    found = list(parallel.iter_chunks(work, 400, minimum=1, small=True, meanwhile=meanwhile))
    assert found == list(range(400))
    assert len(log.read_text().split()) >= 12


def test_an_error_in_a_chunk_starts_no_chunk_still_queued(monkeypatch, tmp_path):
    # every chunk of small results is queued at once: on an error (or Ctrl-C) the pool's
    # exit would otherwise wait for all of them to run
    import os
    import time

    parent = os.getpid()
    log = tmp_path / "chunks"
    log.touch()

    def work(indices):
        if indices[0] == 0 and os.getpid() != parent:
            raise ValueError("a template failed")
        time.sleep(0.05)
        if os.getpid() != parent:
            with log.open("a") as handle:
                handle.write(f"{indices[0]}\n")
        return list(indices)

    monkeypatch.setenv("CHRONICLE_JOBS", "2")
    with pytest.raises(ValueError, match="template"):
        list(parallel.iter_chunks(work, 400, minimum=1, small=True))
    assert len(log.read_text().split()) <= 4


def test_an_error_in_meanwhile_stops_the_pool_and_reaches_the_caller(monkeypatch):
    import multiprocessing

    import pytest

    def meanwhile() -> None:
        raise ValueError("the search index failed")

    monkeypatch.setenv("CHRONICLE_JOBS", "2")
    with pytest.raises(ValueError, match="search index"):
        list(parallel.iter_chunks(lambda idx: list(idx), 400, minimum=1, meanwhile=meanwhile))
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_build_leaves_no_worker_behind(tmp_path, how):
    # `chronicle build | cat` killed while its pool works: the pipe must reach EOF (no
    # orphaned worker holds it) and no process of the build may be left
    site = corpus_site(tmp_path / "site", 300)
    build = subprocess.Popen(build_command(site, "--clean"), env=build_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_children(build.pid, within=30), "the build never forked its pool"
        build.send_signal(how)
        build.wait(timeout=5)
        assert reaches_eof(build.stdout, within=3)
        assert left_running(str(site), within=2) == []
    finally:
        build.kill()
        build.wait()
        build.stdout.close()
        kill_all(left_running(str(site), within=0))


def test_a_worker_asks_to_die_with_its_parent_and_exits_if_it_is_gone_already():
    import ctypes
    import os

    def child_status(parent_named: int | None) -> int:
        child = os.fork()
        if child == 0:  # the would-be worker: never back into pytest
            code = 3
            try:
                parallel._die_with_parent(os.getppid() if parent_named is None else parent_named)
                asked = ctypes.c_int()
                ctypes.CDLL(None).prctl(2, ctypes.byref(asked), 0, 0, 0)  # PR_GET_PDEATHSIG
                code = 0 if asked.value == signal.SIGKILL else 2
            finally:
                os._exit(code)
        return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])

    assert child_status(None) == 0  # its parent is there: the kernel will kill it with it
    assert child_status(os.getpid() + 10**6) == 1  # forked by one since gone: exits


def test_a_thousand_pools_whose_chunks_were_taken_back_all_shut_down():
    # A chunk this process takes back is cancelled in the pool's queue; Python 3.11's
    # pool then hung at shutdown about once in 130 pools (CPython issue 94440), here in
    # 3 of 3 runs of this loop before the fix. A hang is a timeout, in a child process.
    import os
    import sys

    loop = ("from chronicle import parallel\n"
            "for _ in range(1000):\n"
            "    found = list(parallel.iter_chunks(lambda idx: list(idx), 400, minimum=1,\n"
            "                                      meanwhile=lambda: None))\n"
            "    assert found == list(range(400))\n")
    done = subprocess.run([sys.executable, "-c", loop], capture_output=True, text=True,
                          env={**os.environ, "CHRONICLE_JOBS": "2"}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
