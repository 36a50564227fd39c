"""Density's pure parts: when each of k apps first answered, probed at once on loopback."""

from __future__ import annotations

import time

import pytest

from chronicle.lab.density import answer_times
from chronicle.lab.subjects.base import BootTimeout
from tests.support import apps_up_at

PROBE = 0.2  # answer_times' probe timeout: a request made just before an app is up is
POLL = 0.05  # given up after it, and the next one follows one poll interval later


def test_each_app_is_seen_answering_within_one_probe_of_when_it_came_up():
    # One app up early while seven are still down: probed one after another, each
    # down app would hold the loop for a whole probe timeout before the early one's turn.
    start = time.monotonic()
    times = [start + 0.3, *(start + 2.0 + 0.1 * i for i in range(7))]
    with apps_up_at(times) as ports:
        seen = answer_times([(port, "/") for port in ports], start + 30)
    for up_at, answered in zip(times, seen, strict=True):
        assert up_at <= answered <= up_at + PROBE + POLL + 0.25  # slack for a busy host


def test_apps_that_never_answer_time_out_at_the_deadline():
    start = time.monotonic()
    with apps_up_at([start, start + 60]) as ports:
        with pytest.raises(BootTimeout, match="1 of 2 instances never answered 200"):
            answer_times([(port, "/") for port in ports], start + 1.0)
        assert time.monotonic() - start < 1.0 + PROBE + POLL + 0.2
