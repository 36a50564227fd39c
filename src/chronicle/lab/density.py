"""Density: how many instances of one guest fit in a memory budget, k = 1, 2, 4, …

One step starts k instances of a subject one after another (as a deployer's loop of
``incus launch`` or of microVM runners would), waits until every one's app has answered
on 127.0.0.1, lets them settle, and sums what the host pays for them:

- ``total_pss_mib``: PSS summed over every instance's host processes. PSS shares a page
  among the processes that map it, so k containers running the same binaries from one
  image's blocks are charged those pages once between them; k qemu processes share
  only qemu's own code, each guest's RAM being its own;
- ``total_rss_mib``: the same with shared pages counted in full by each instance;
- ``total_cgroup_mib`` (containers): the cgroups' usage, page cache included — a file
  page is charged to the first cgroup that read it, so the sum counts it once;
- ``marginal_pss_mib``: what the last step's added instances cost each,
  ``(total(k) − total(k_prev)) / (k − k_prev)`` (for k = 1, the total);
- ``all_answer_ms``: from the first start request to the last instance's first 200.

A step in which an instance dies before its app answers (a qemu that exits, a container
whose systemd cannot start) fails at once, naming what the instance's console said; the
experiment then ends that subject's sweep there, with the reason in its facts.

The next step doubles k, unless its predicted total — this total plus the new instances
at this step's marginal cost — would exceed the budget, or ``max_instances``, or half of
what the host has available now (the machine is shared: the sweep must never push it
into swapping or the OOM killer). Every instance of a step is gone before the next one
starts, and on any error, timeout or signal (each subject cleans up on exit).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chronicle.lab.guestboot import url_answers
from chronicle.lab.subjects.base import MIB, BootTimeout, Subject, SubjectError


@dataclass(frozen=True)
class Step:
    """k instances, all answering: what they cost together, in bytes, and how long."""

    instances: int
    all_answer_ms: float
    pss: int
    rss: int
    cgroup: int | None
    facts: dict[str, Any] = field(default_factory=dict, compare=False)

    def metrics(self, marginal: float) -> dict[str, tuple[float, str]]:
        values = {
            "instances": (float(self.instances), "count"),
            "all_answer_ms": (self.all_answer_ms, "ms"),
            "total_pss_mib": (self.pss / MIB, "MiB"),
            "total_rss_mib": (self.rss / MIB, "MiB"),
            "marginal_pss_mib": (marginal / MIB, "MiB"),
        }
        if self.cgroup is not None:
            values["total_cgroup_mib"] = (self.cgroup / MIB, "MiB")
        return values


def marginal(steps: Sequence[Step]) -> float:
    """Bytes of PSS per instance added by the last step."""
    last = steps[-1]
    if len(steps) == 1:
        return last.pss / last.instances
    before = steps[-2]
    return (last.pss - before.pss) / (last.instances - before.instances)


def next_count(steps: Sequence[Step], budget: int, max_instances: int,
               available: int) -> tuple[int | None, str]:
    """The next k, or None and why the sweep stops there."""
    last = steps[-1]
    wanted = last.instances * 2
    predicted = last.pss + (wanted - last.instances) * max(marginal(steps), 0.0)
    if wanted > max_instances:
        return None, f"{wanted} instances would pass max_instances = {max_instances}"
    if predicted > budget:
        return None, (f"{wanted} instances would need about {predicted / MIB:.0f} MiB, "
                      f"over the budget of {budget / MIB:.0f} MiB")
    if predicted > available / 2:
        return None, (f"{wanted} instances would need about {predicted / MIB:.0f} MiB, "
                      f"over half of the {available / MIB:.0f} MiB the host has available")
    return wanted, ""


def available_memory(meminfo: Path = Path("/proc/meminfo")) -> int:
    """The host's ``MemAvailable``, in bytes."""
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no MemAvailable in {meminfo}")


def inotify_instances() -> int | None:
    """The host's ``fs.inotify.max_user_instances``: each container's systemd needs some,
    and every unprivileged container maps to the same host user, so the limit is shared."""
    try:
        return int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        return None


def run_step(make: Callable[[], Subject], k: int, timeout: float, settle: float) -> Step:
    """Start ``k`` instances, wait for every app, measure them together, remove them.

    The apps are polled together, not one after another, so the time the last one
    answered is when it answered; an instance that dies meanwhile ends the step at once
    with what its console said, instead of after the whole timeout.
    """
    with contextlib.ExitStack() as stack:
        started = time.monotonic()
        subjects = [stack.enter_context(make()) for _ in range(k)]
        answered = _wait_all(subjects, started + timeout)
        time.sleep(settle)
        prints = [subject.measure() for subject in subjects]
        facts = subjects[0].facts()
    cgroups = [p.cgroup for p in prints]
    return Step(
        instances=k,
        all_answer_ms=(max(answered) - started) * 1000.0,
        pss=sum(p.pss for p in prints),
        rss=sum(p.rss for p in prints),
        cgroup=None if None in cgroups else sum(c for c in cgroups if c is not None),
        facts=facts,
    )


def _wait_all(subjects: Sequence[Any], deadline: float) -> list[float]:
    """When each subject's app first answered 200 on 127.0.0.1."""
    def dead(waiting: list[int]) -> str:
        gone = [why for i in waiting if (why := _gone(subjects[i]))]
        return (f"{len(gone)} of {len(subjects)} instances ended before their app "
                f"answered; the first: {gone[0]}") if gone else ""

    return answer_times([(s.http_port, s.definition.app.url) for s in subjects], deadline,
                        dead)


PROBE_TIMEOUT = 0.2  # a request made just before an app is up is given up after this
POLL = 0.05  # and the next one follows this much later


def answer_times(targets: Sequence[tuple[int, str]], deadline: float,
                 dead: Callable[[list[int]], str] = lambda waiting: "") -> list[float]:
    """When each ``(port, path)`` on 127.0.0.1 first answered 200. ``dead(waiting)``,
    asked every 2 s with the indices not answered yet, says why the wait is hopeless.

    Every target has a prober thread of its own: probed one after another, a target
    that holds its request unanswered (a proxy or slirp accepting for a guest whose app
    is not up yet) would keep the others waiting for its timeout, and the time one was
    seen answering would be late by a timeout per target still down. So each time is
    within one probe timeout and one poll interval of when that app came up.
    """
    answered: list[float | None] = [None] * len(targets)
    done = threading.Event()

    def probe(index: int, port: int, path: str) -> None:
        while not done.is_set():
            if url_answers(port, path, timeout=PROBE_TIMEOUT):
                answered[index] = time.monotonic()
                return
            done.wait(POLL)

    probers = [threading.Thread(target=probe, args=(index, port, path), daemon=True)
               for index, (port, path) in enumerate(targets)]
    for prober in probers:
        prober.start()
    try:
        checked = time.monotonic()
        while (waiting := [i for i, at in enumerate(answered) if at is None]):
            now = time.monotonic()
            if now >= deadline:
                raise BootTimeout(f"{len(waiting)} of {len(targets)} instances never "
                                  "answered 200 within the boot timeout")
            if now - checked >= 2.0:
                checked = now
                if why := dead(waiting):
                    raise SubjectError(why)
            time.sleep(min(POLL, max(deadline - now, 0.0)))
    finally:
        done.set()  # a signal or an error here: no prober outlives the wait
        for prober in probers:
            prober.join()
    return [at for at in answered if at is not None]


def _gone(subject: Any) -> str:
    """Why the subject is no longer running ('' while it is): a qemu that exited, or a
    container that stopped, with the last lines of its console."""
    proc = getattr(subject, "proc", None)
    if proc is not None:
        if proc.poll() is None:
            return ""
        subject.watch.pump(0.1)
        return f"qemu exited with code {proc.returncode}: {subject.watch.tail('serial', 3)}"
    return subject.stopped()
