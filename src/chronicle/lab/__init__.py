"""The helper API for Python experiments: read the plan, emit samples, clean up.

A complete experiment::

    from chronicle import lab

    plan = lab.plan()
    lab.measure({"a": measure_a, "b": measure_b}, plan=plan, order="abba")

Each callable returns ``{metric: (value, unit)}`` for one repetition. Output follows the
protocol in ``experiments/README.md``: one JSON object per line on stdout. This module
stays import-light (no numpy, no rich): experiments import it before timing anything.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chronicle.lab.results import Sample

__all__ = [
    "Cleanup",
    "Plan",
    "cleanup",
    "emit",
    "measure",
    "plan",
    "report",
    "report_subject",
    "schedule",
]


@dataclass(frozen=True)
class Plan:
    """What the runner asked for, from the ``CHRONICLE_*`` environment variables."""

    repeat: int = 10
    warmup: int = 1
    quick: bool = False
    scratch: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    seed: int = 0
    experiment: str = ""


def plan(environ: Mapping[str, str] | None = None) -> Plan:
    """The run's plan; sensible defaults when a script is started by hand."""
    env = os.environ if environ is None else environ
    scratch = env.get("CHRONICLE_SCRATCH")
    if not scratch:
        scratch = tempfile.mkdtemp(prefix="chronicle-scratch-")
    return Plan(
        repeat=int(env.get("CHRONICLE_REPEAT", "10")),
        warmup=int(env.get("CHRONICLE_WARMUP", "1")),
        quick=env.get("CHRONICLE_QUICK", "0") == "1",
        scratch=Path(scratch),
        params=json.loads(env.get("CHRONICLE_PARAMS") or "{}"),
        seed=int(env.get("CHRONICLE_SEED", "0")),
        experiment=env.get("CHRONICLE_EXPERIMENT", ""),
    )


_read_plan = plan  # `measure` takes a parameter named `plan`


def _print(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def emit(
    subject: str,
    metric: str,
    value: float,
    unit: str,
    run: int,
    *,
    phase: str | None = None,
    warmup: bool = False,
    meta: dict[str, Any] | None = None,
) -> None:
    """Print one sample line (a :class:`Sample`, one parameter per field), flushed so the
    runner sees it (and its progress) at once."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{subject}/{metric}: value {value!r} is not finite")
    _print(Sample(subject=subject, metric=metric, value=value, unit=unit, run=int(run),
                  phase=phase, warmup=bool(warmup), meta=meta or {}).to_json())


def report(**facts: Any) -> None:
    """Facts about the run (tool versions, settings) merged into the result's provenance."""
    _print({"provenance": facts})


def report_subject(subject: str, **facts: Any) -> None:
    """Facts about one subject, e.g. ``accelerator="tcg", kvm_kind="pvm", qemu="7.2.11"``."""
    _print({"provenance": {"subjects": {subject: facts}}})


def schedule(
    subjects: list[str] | tuple[str, ...],
    repeat: int,
    warmup: int = 0,
    seed: int = 0,
    order: str = "shuffle",
) -> list[tuple[int, str, bool]]:
    """``(run index, subject, is_warmup)`` in the order to measure them.

    Subjects are interleaved round by round, never measured in blocks, so slow drift
    (thermal, a neighbour's load, a filling cache) spreads over all subjects instead of
    landing on whichever ran last. ``shuffle`` draws each round's order from a seeded
    RNG; ``abba`` alternates forward and reversed rounds (A B, B A, A B, …). Warm-up
    rounds come first and have their own run indices from 0.
    """
    if order not in ("shuffle", "abba"):
        raise ValueError(f"order must be 'shuffle' or 'abba', not {order!r}")
    names = list(subjects)
    rng = random.Random(seed)
    out: list[tuple[int, str, bool]] = []
    for is_warmup, rounds in ((True, warmup), (False, repeat)):
        for index in range(rounds):
            if order == "abba":
                ordered = names if index % 2 == 0 else names[::-1]
            else:
                ordered = rng.sample(names, len(names))
            out += [(index, name, is_warmup) for name in ordered]
    return out


Measurement = Mapping[str, tuple[float, str]]


def measure(
    subjects: Mapping[str, Callable[[], Measurement]],
    *,
    plan: Plan | None = None,
    order: str = "shuffle",
    repeat: int | None = None,
    warmup: int | None = None,
    seed: int | None = None,
    phase: str | None = None,
) -> None:
    """Run every subject's callable on an interleaved schedule and emit what it returns."""
    current = plan or _read_plan()
    steps = schedule(
        list(subjects),
        repeat if repeat is not None else current.repeat,
        warmup if warmup is not None else current.warmup,
        seed if seed is not None else current.seed,
        order,
    )
    for run, name, is_warmup in steps:
        for metric, (value, unit) in subjects[name]().items():
            emit(name, metric, value, unit, run, phase=phase, warmup=is_warmup)


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) arrived: raised so every ``finally`` and clean-up runs."""


class Cleanup(contextlib.ExitStack):
    """An ExitStack that also unwinds on SIGTERM and SIGINT.

    The runner ends a script's process group with SIGTERM; Python's default for it is to
    die on the spot, skipping ``finally``. Inside this context both signals raise
    ``Interrupted`` instead, so registered clean-ups (stop the VM, delete the container)
    always run. A second signal during clean-up is ignored rather than cutting it short.
    """

    def __enter__(self) -> Cleanup:
        super().__enter__()
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._raise)
        return self

    def _raise(self, signum: int, frame: Any) -> None:
        for sig in self._previous:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signal.Signals(signum).name)

    def __exit__(self, *exc_info: Any) -> bool:
        try:
            return super().__exit__(*exc_info)
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)


def cleanup() -> Cleanup:
    """``with lab.cleanup() as stack: stack.callback(vm.kill)`` — always runs."""
    return Cleanup()
