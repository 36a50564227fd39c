"""Host probes: memory from smaps_rollup, process trees, HTTP readiness, the serial watcher."""

from __future__ import annotations

import http.server
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from chronicle.lab import probes


def test_process_memory_reads_pss_and_rss_of_a_live_process():
    memory = probes.process_memory(os.getpid())
    assert 0 < memory.pss_kib <= memory.rss_kib
    assert memory.pids == (os.getpid(),)


def test_total_memory_skips_processes_that_are_gone():
    gone_pid = 2**22 + 17  # above pid_max's default: never a live process
    total = probes.total_memory([os.getpid(), gone_pid])
    assert total.pids == (os.getpid(),)


def test_descendants_finds_a_grandchild():
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 5
        # The forked child is ``sh`` until it has exec'd ``sleep``: wait for the exec.
        while time.monotonic() < deadline and not any(
            probes.process_exe(pid).endswith("sleep") for pid in probes.descendants(proc.pid)[1:]
        ):
            time.sleep(0.01)
        tree = probes.descendants(proc.pid)
        assert tree[0] == proc.pid
        assert any(probes.process_exe(pid).endswith("sleep") for pid in tree[1:])
        assert all(probes.parent_of(pid) in tree for pid in tree[1:])
    finally:
        for pid in reversed(probes.descendants(proc.pid)):
            os.kill(pid, 9)
        proc.wait()


def test_cgroup_of_self_is_a_folder_listing_us():
    group = probes.cgroup_of(os.getpid())
    if group is None or not group.is_dir():
        pytest.skip("no cgroup v2 here")
    assert os.getpid() in probes.cgroup_pids(group)


def test_file_bytes_adds_file_sizes(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "b").write_bytes(b"y" * 5)
    assert probes.file_bytes([tmp_path / "a", tmp_path / "b"]) == 15


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_http_ready_returns_once_a_server_answers_on_loopback(tmp_path):
    port = probes.free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Quiet)
    later = threading.Timer(0.3, server.serve_forever)
    started = time.monotonic()
    later.start()
    try:
        answered = probes.http_ready(port, deadline=time.monotonic() + 5)
        assert answered - started >= 0.25
    finally:
        server.shutdown()
        server.server_close()
        later.join()


def test_http_ready_does_not_count_a_connection_that_is_closed_unanswered():
    # What a port forwarder does before anything listens inside the guest.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    stop = threading.Event()

    def accept_and_close():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_close)
    thread.start()
    try:
        with pytest.raises(TimeoutError):
            probes.http_ready(port, deadline=time.monotonic() + 0.5)
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_stream_watcher_finds_a_marker_split_across_writes():
    read_end, write_end = os.pipe()
    watcher = probes.StreamWatcher({"serial": read_end})
    marker = re.compile(rb"CHRONICLE-BOOTED uptime=([0-9.]+)[\r\n]")
    try:
        os.write(write_end, b"noise\r\nCHRONICLE-BOO")
        watcher.pump(0.1)
        assert watcher.find("serial", marker) is None
        os.write(write_end, b"TED uptime=1.25\r\n")
        watcher.pump(0.1)
        seen = watcher.find("serial", marker)
        assert seen is not None and seen.match.group(1) == b"1.25"
        assert seen.at <= time.monotonic()
    finally:
        watcher.close()
        os.close(read_end)
        os.close(write_end)


def test_stream_watcher_keeps_the_tail_for_error_reports():
    read_end, write_end = os.pipe()
    watcher = probes.StreamWatcher({"log": read_end})
    try:
        os.write(write_end, b"".join(b"line %d\n" % i for i in range(100)))
        os.close(write_end)
        while watcher.open:
            watcher.pump(0.1)
        assert watcher.tail("log", lines=2) == "line 98\nline 99"
    finally:
        watcher.close()
        os.close(read_end)
