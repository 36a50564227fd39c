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

Before forking, this process's objects are frozen out of the garbage collector
(:func:`gc.freeze`, the recipe Python's documentation gives for fork without exec). A
full collection walks every tracked object: in a worker that would write to, and so
copy, every page of the heap it shares with this process, and here it walks the build's
whole state again and again for nothing (a cold build at N = 10,000 ran 15 of them in
this process, 0.70 s, and not one found garbage). They are thawed when the pool is done,
or, inside :func:`build_collector` (a build: three pools, each after more state was
made), when that block ends. A frozen object is still freed when its last reference
goes; only cycles among frozen objects wait for the thaw.

A worker dies with this process, whatever ends it (SIGKILL included): on Linux each
asks the kernel for SIGKILL when its parent goes (:func:`_die_with_parent`). Left
alone, a worker of a killed build sits under PID 1 blocked on the pool's pipe forever,
holding the build's stdout open (``chronicle build | cat`` never returns). Workers
write only into the staging folder, so killing one mid-chunk loses nothing.
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar

R = TypeVar("R")
PARALLEL_MIN = 200
CHUNKS_PER_WORKER = 6  # several chunks each, so one slow chunk does not idle a core
MAX_CHUNK = 64  # items: a chunk's results (rendered bodies) are held until handed back
MIN_CHUNK = 8  # below this a chunk's round trip costs more than its items
# Chunks each worker has queued: while this process renders a chunk of its own (or
# commits the cache) it hands out no work, and two queued chunks (~0.25 s) ran dry: the
# worker idled 0.6–1.0 s of an 11 s parse at N = 10,000, with four 0.13 s.
QUEUED_PER_WORKER = 4
# A worker's finished chunk (~1 MB of rendered HTML) waits in the result pipe until the
# pool's thread here reads it; in a 64 KiB pipe the worker waited 7.5 ms a chunk (the
# median), in a 1 MiB one 1.8 ms. Linux only, and only up to /proc/sys/fs/pipe-max-size.
RESULT_PIPE_BYTES = 1 << 20
# While this process renders a chunk, the pool's thread that reads the workers' results
# waits for the GIL, up to one switch interval (5 ms) per pipe read; a worker whose
# results do not fit the pipe sits idle meanwhile. A short interval keeps both cores
# busy (at N = 10,000: 1.6 → 1.9 cores used while parsing, parse 16.5 s → 14–15 s).
SWITCH_INTERVAL = 0.0005

_work: Callable[[Sequence[int]], list[Any]] | None = None
_keeping_frozen = False  # inside build_collector(): pools leave the heap frozen
# The collector's youngest generation runs once this many more objects were made than
# freed (Python's default: 700). Parsing one post makes some thousands of tokens and
# frees them all, by reference counting, when the post is done: at 700 every process
# of a cold build at N = 10,000 ran ~5,000 young collections, each looking at objects
# about to go anyway (0.25 s of CPU, and more in promoting them).
YOUNG_THRESHOLD = 20_000


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
    return list(iter_chunks(work, count, minimum, small=True))


def iter_chunks(work: Callable[[Sequence[int]], list[R]], count: int,
                minimum: int | None = None, small: bool = False,
                meanwhile: Callable[[], None] | None = None) -> Iterator[R]:
    """Like :func:`map_chunks`, but results arrive chunk by chunk (flat memory).

    Results come out in order, so a finished chunk waits here until every earlier one
    is done. ``small``: the results are small enough to hold them all; otherwise this
    process stops taking chunks of its own while :data:`QUEUED_PER_WORKER` finished
    ones wait, and memory stays flat (rendered bodies: ~1 MB a chunk).

    ``meanwhile``: other work of this process, done once the workers have their first
    chunks and before this process takes any (first of all without a pool), so it
    runs beside theirs instead of after; it is over before the first result comes out.
    The workers were forked before it ran: they do not see what it does."""
    jobs = workers()
    minimum = PARALLEL_MIN if minimum is None else minimum
    chunks = _guided_chunks(count, jobs)
    if count < minimum or jobs < 2 or "fork" not in multiprocessing.get_all_start_methods():
        if meanwhile is not None:
            meanwhile()
        for chunk in chunks:  # chunk by chunk here too: one chunk's results held at a time
            yield from work(chunk)
        return
    global _work
    _work = work
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        pool = ProcessPoolExecutor(max_workers=jobs - 1,
                                   mp_context=multiprocessing.get_context("fork"),
                                   initializer=_die_with_parent, initargs=(os.getpid(),))
        try:
            _widen_pipe(getattr(pool, "_result_queue", None))
            # small results: every chunk queued at once (the workers never run dry while
            # this process is busy elsewhere), and this process takes the last ones
            queued = len(chunks) if small else QUEUED_PER_WORKER * (jobs - 1)
            yield from _share(work, chunks, pool, queued, len(chunks) if small else queued,
                              meanwhile)
        finally:
            # Chunks taken back (cancelled) may still wait in the pool's queue. Python
            # 3.11's pool then waits for ever at shutdown unless told to drop them
            # (CPython issue 94440; Debian 12's 3.11.2 hung about once in 130 pools).
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        _work = None
        sys.setswitchinterval(interval)
        if not frozen_before and not _keeping_frozen:
            gc.unfreeze()


@contextmanager
def build_collector() -> Iterator[None]:
    """The garbage collector as a build wants it, for the block's duration.

    Objects the pools in the block freeze (see the module's notes) stay frozen until it
    ends, so a later pool's collections skip what an earlier one froze; young
    collections wait for :data:`YOUNG_THRESHOLD` new objects. At the end both go back:
    frozen objects to the collector, unless some were frozen before the block (a caller
    that froze them keeps them so), and the thresholds to what they were. A long-lived
    process (the live preview) builds again and again; one build's settings must not
    outlive it."""
    global _keeping_frozen
    outer, frozen_before = _keeping_frozen, gc.get_freeze_count()
    thresholds = gc.get_threshold()
    _keeping_frozen = True
    gc.set_threshold(max(thresholds[0], YOUNG_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        _keeping_frozen = outer
        gc.set_threshold(*thresholds)
        if not outer and not frozen_before:
            gc.unfreeze()


@contextmanager
def lasting_objects() -> Iterator[None]:
    """A block that makes many objects, all kept until the build ends (a 10,000-post
    blog's figures read back from the cache: ~300,000): no collection runs while it
    does, for it could find nothing, and inside :func:`build_collector` what it made is
    frozen with the rest, so later collections skip it too. Figures read back at
    N = 10,000: collections 0.15-0.2 s → 0.08 s."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _keeping_frozen:
            gc.freeze()
        if collecting:
            gc.enable()


def _guided_chunks(count: int, jobs: int) -> list[range]:
    """Chunks that shrink as the work drains ("guided" scheduling): big ones while there
    is plenty left (fewer round trips), small ones at the end, so no process waits long
    for the last chunks of another."""
    chunks: list[range] = []
    start = 0
    while start < count:
        left = count - start
        size = min(left, MAX_CHUNK, max(MIN_CHUNK, -(-left // (jobs * CHUNKS_PER_WORKER))))
        chunks.append(range(start, start + size))
        start += size
    return chunks


def _widen_pipe(queue: Any) -> None:
    """Give the pool's result pipe :data:`RESULT_PIPE_BYTES` where the system allows
    (the pipe is a private detail of the pool: nothing happens if it is not there)."""
    try:
        import fcntl
    except ImportError:  # not Unix (and then not fork either)
        return
    reader = getattr(queue, "_reader", None)
    if reader is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        fcntl.fcntl(reader.fileno(), fcntl.F_SETPIPE_SZ, RESULT_PIPE_BYTES)
    except OSError:
        pass  # above the system's limit, or not a pipe: the default size still works


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """In a worker: be killed by the kernel when ``parent`` (the build) ends.

    The signal follows the *thread* that forked the worker; a fork-context pool forks
    every worker at the first ``submit``, from the thread that runs the pool's block,
    which outlives the pool. The parent may have died between the fork and the
    ``prctl``: then no signal will come, and ``getppid`` no longer names it."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no parent-death signal to ask for
        pass
    if os.getppid() != parent:
        os._exit(1)


def _share(work: Callable[[Sequence[int]], list[R]], chunks: list[range],
           pool: ProcessPoolExecutor, queued: int, hold: int,
           meanwhile: Callable[[], None] | None = None) -> Iterator[R]:
    """Chunks in order: the pool keeps ``queued`` in flight, this process takes the next
    one itself whenever it has nothing to hand back yet, up to ``hold`` finished chunks
    waiting for an earlier one, or, when every chunk is queued, the last one no worker
    has started. ``meanwhile`` runs once the first chunks are out."""
    done: dict[int, list[R]] = {}
    pending: dict[Future[list[R]], int] = {}
    taken = emitted = 0
    try:
        while emitted < len(chunks):
            while taken < len(chunks) and len(pending) < queued:
                pending[pool.submit(_run_chunk, chunks[taken])] = taken
                taken += 1
            if meanwhile is not None:
                meanwhile, later = None, meanwhile
                later()
            if emitted not in done:
                # ahead of the workers only so far: finished chunks wait here in memory
                if taken < len(chunks) and len(done) <= hold:
                    done[taken] = work(chunks[taken])
                    taken += 1
                elif (taken == len(chunks) and len(done) <= hold
                      and (stolen := _steal(pending)) is not None):
                    done[stolen] = work(chunks[stolen])
                elif pending:
                    wait(pending, return_when=FIRST_COMPLETED)
            for future in [f for f in pending if f.done()]:
                done[pending.pop(future)] = future.result()
            while emitted in done:
                yield from done.pop(emitted)
                emitted += 1
    finally:
        # an error, Ctrl-C or a caller that stops early: the pool's exit waits for every
        # chunk still queued, so none that has not started may start
        for future in pending:
            future.cancel()
    if meanwhile is not None:  # there were no chunks
        meanwhile()


def _steal(pending: dict[Future[Any], int]) -> int | None:
    """The last queued chunk no worker has started, taken back for this process (its
    future cancelled), or None when every queued chunk has started."""
    for future, index in sorted(pending.items(), key=lambda item: -item[1]):
        if future.cancel():
            del pending[future]
            return index
    return None


def _run_chunk(indices: range) -> list[Any]:
    assert _work is not None, "map_chunks sets the work before forking"
    return _work(indices)
