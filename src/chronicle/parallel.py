"""Spreading a build's work over the machine's cores, with results in a fixed order.

:func:`map_chunks` runs ``work(indices)`` over ``range(count)`` in chunks. Below
:data:`PARALLEL_MIN` items, or on one core, it simply calls ``work`` here: a pool costs
more than it saves on a small site. Above it, ``jobs - 1`` worker processes are
*forked* so they inherit the build's state (the site model, the renderer, the staging
folder) instead of receiving it pickled; only chunk indices go out and each chunk's
results come back. This process works on chunks too while the workers are busy: it
would otherwise sit idle, and one process fewer is one copy fewer of the build's
memory in the process tree. Results come out in chunk order, so the output never
depends on scheduling.

Workers must not write shared state other than files of their own (the staging folder);
whatever the parent needs comes back in the results.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

R = TypeVar("R")
PARALLEL_MIN = 200
CHUNKS_PER_WORKER = 6  # several chunks each, so one slow chunk does not idle a core
MAX_CHUNK = 64  # items: a chunk's results (rendered bodies) are held until handed back
# While this process renders a chunk, the pool's thread that reads the workers' results
# waits for the GIL, up to one switch interval (5 ms) per pipe read; a worker whose
# results do not fit the pipe sits idle meanwhile. A short interval keeps both cores
# busy (at N = 10,000: 1.6 → 1.9 cores used while parsing, parse 16.5 s → 14–15 s).
SWITCH_INTERVAL = 0.0005

_work: Callable[[Sequence[int]], list[Any]] | None = None


def workers() -> int:
    """Cores this process may use (``CHRONICLE_JOBS`` overrides, e.g. 1 for serial)."""
    forced = os.environ.get("CHRONICLE_JOBS", "")
    if forced.isdigit() and int(forced) > 0:
        return int(forced)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def map_chunks(work: Callable[[Sequence[int]], list[R]], count: int,
               minimum: int | None = None) -> list[R]:
    """``work`` over ``range(count)``: one result list, in index order."""
    return list(iter_chunks(work, count, minimum))


def iter_chunks(work: Callable[[Sequence[int]], list[R]], count: int,
                minimum: int | None = None) -> Iterator[R]:
    """Like :func:`map_chunks`, but results arrive chunk by chunk (flat memory)."""
    jobs = workers()
    minimum = PARALLEL_MIN if minimum is None else minimum
    size = min(MAX_CHUNK, max(8, -(-count // (jobs * CHUNKS_PER_WORKER))))
    chunks = [range(start, min(start + size, count)) for start in range(0, count, size)]
    if count < minimum or jobs < 2 or "fork" not in multiprocessing.get_all_start_methods():
        for chunk in chunks:  # chunk by chunk here too: one chunk's results held at a time
            yield from work(chunk)
        return
    global _work
    _work = work
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        with ProcessPoolExecutor(max_workers=jobs - 1,
                                 mp_context=multiprocessing.get_context("fork")) as pool:
            yield from _share(work, chunks, pool, queued=2 * (jobs - 1))
    finally:
        _work = None
        sys.setswitchinterval(interval)


def _share(work: Callable[[Sequence[int]], list[R]], chunks: list[range],
           pool: ProcessPoolExecutor, queued: int) -> Iterator[R]:
    """Chunks in order: the pool keeps ``queued`` in flight, this process takes the next
    one itself whenever it has nothing to hand back yet."""
    done: dict[int, list[R]] = {}
    pending: dict[Future[list[R]], int] = {}
    taken = emitted = 0
    while emitted < len(chunks):
        while taken < len(chunks) and len(pending) < queued:
            pending[pool.submit(_run_chunk, chunks[taken])] = taken
            taken += 1
        if emitted not in done:
            # ahead of the workers only so far: finished chunks wait here in memory
            if taken < len(chunks) and len(done) <= queued:
                done[taken] = work(chunks[taken])
                taken += 1
            elif pending:
                wait(pending, return_when=FIRST_COMPLETED)
        for future in [f for f in pending if f.done()]:
            done[pending.pop(future)] = future.result()
        while emitted in done:
            yield from done.pop(emitted)
            emitted += 1


def _run_chunk(indices: range) -> list[Any]:
    assert _work is not None, "map_chunks sets the work before forking"
    return _work(indices)
