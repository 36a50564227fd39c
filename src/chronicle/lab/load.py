"""A fixed burst of requests to a guest's app on 127.0.0.1, one after another.

``footprint-app`` measures a subject idle, sends this burst, and measures it again: what
serving costs beyond booting (puma's heap after Rails has handled requests, nginx's
buffers, SQLite's pages). Requests go one at a time on a kept-alive connection, as a
single client would send them, so the burst is the same work for every subject; a
connection the forwarder drops is opened again. Every answer must be 200, or the burst
fails: a footprint measured after errors would not be a footprint under load.
"""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass

from chronicle.lab.probes import LOOPBACK
from chronicle.lab.subjects.base import SubjectError


@dataclass(frozen=True)
class Burst:
    """How long ``requests`` GETs took, and how many connections they needed."""

    requests: int
    seconds: float
    connections: int


def burst(port: int, path: str, requests: int, timeout: float = 60.0) -> Burst:
    """``requests`` GETs of ``path`` on 127.0.0.1:port, each answered 200."""
    connection: http.client.HTTPConnection | None = None
    opened = 0
    start = time.monotonic()
    try:
        for index in range(requests):
            for attempt in (1, 2):
                if connection is None:
                    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
                    opened += 1
                try:
                    connection.request("GET", path, headers={"Host": "localhost"})
                    response = connection.getresponse()
                    response.read()
                    break
                except (OSError, http.client.HTTPException) as exc:
                    connection.close()
                    connection = None
                    if attempt == 2:
                        raise SubjectError(f"request {index + 1} of {requests} to GET {path} "
                                           f"on {LOOPBACK}:{port} failed: {exc}") from None
            if response.status != 200:
                raise SubjectError(f"request {index + 1} of {requests} to GET {path} on "
                                   f"{LOOPBACK}:{port} answered {response.status}")
            if response.will_close:
                connection.close()
                connection = None
    finally:
        if connection is not None:
            connection.close()
    return Burst(requests, time.monotonic() - start, opened)
