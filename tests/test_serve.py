import http.client
import socket
import time
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from chronicle.build import BuildOptions
from chronicle.serve import PreviewServer, resolve_request
from tests.support import another_process_holding_the_lock
from tests.test_check import make_site, post


def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET exactly ``path``, byte for byte: no client-side normalisation of ``..``."""
    host, port = urlsplit(url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def site(tmp_path):
    root = make_site(tmp_path / "site", {
        "2025-03-01-boot.md": post("Boot time", "The first version."),
    })
    (tmp_path / "secret.txt").write_text("private")
    return root


@pytest.fixture
def preview(site):
    server = PreviewServer(BuildOptions(root=site), port=0, log=lambda line: None)
    server.start()
    yield server
    server.close()


# -- which files may be served ---------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "preview"
    (root / "a").mkdir(parents=True)
    (root / "index.html").write_text("home")
    (root / "a" / "index.html").write_text("a")
    (tmp_path / "secret.txt").write_text("private")
    return root


@pytest.mark.parametrize("path", [
    "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt", "/a/../../secret.txt",
    "/a/%2e%2e/%2e%2e/secret.txt", "/..%5csecret.txt",
])
def test_dot_dot_is_refused_however_encoded(folder, path):
    assert resolve_request(folder, "/", path) == (None, HTTPStatus.FORBIDDEN)


def test_symlink_out_of_the_folder_is_refused(folder):
    (folder / "escape.txt").symlink_to(folder.parent / "secret.txt")
    (folder / "outside").symlink_to(folder.parent, target_is_directory=True)
    assert resolve_request(folder, "/", "/escape.txt") == (None, HTTPStatus.FORBIDDEN)
    assert resolve_request(folder, "/", "/outside/secret.txt") == (None, HTTPStatus.FORBIDDEN)


def test_folder_url_serves_its_index_and_slashless_folder_redirects(folder):
    assert resolve_request(folder, "/", "/a/") == ((folder / "a" / "index.html").resolve(),
                                                   HTTPStatus.OK)
    assert resolve_request(folder, "/", "/a")[1] == HTTPStatus.MOVED_PERMANENTLY


def test_a_name_too_long_for_the_file_system_is_not_found(folder):
    # a segment over 255 bytes (or a path over 4096) names no file: the file system
    # refuses to look it up (ENAMETOOLONG) rather than saying it is not there
    for path in ("/" + "a" * 256, "/a/" + "%C3%A9" * 200 + "/", "/a" * 2100):
        assert resolve_request(folder, "/", path) == (None, HTTPStatus.NOT_FOUND)


def test_path_outside_the_base_path_is_not_found(folder):
    assert resolve_request(folder, "/blog/", "/index.html") == (None, HTTPStatus.NOT_FOUND)
    assert resolve_request(folder, "/blog/", "/blog/index.html")[1] == HTTPStatus.OK


# -- the running server ----------------------------------------------------------------

def test_server_listens_on_loopback_only(preview):
    assert preview._httpd.server_address[0] == "127.0.0.1"
    assert preview.url.startswith("http://127.0.0.1:")


def test_preview_is_built_in_the_cache_not_in_output(site, preview):
    assert (site / ".chronicle" / "preview" / "2025" / "03" / "boot" / "index.html").is_file()
    assert not (site / "output").exists()


def test_site_is_served_under_the_base_path(preview):
    assert urlsplit(preview.url).path == "/blog/"
    status, body = raw_get(preview.url, "/blog/2025/03/boot/")
    assert status == 200 and b"The first version." in body
    assert raw_get(preview.url, "/")[0] == 301


def test_traversal_over_http_is_refused(preview):
    for path in ("/blog/../../secret.txt", "/blog/%2e%2e/%2e%2e/%2e%2e/secret.txt"):
        status, body = raw_get(preview.url, path)
        assert status in (403, 404) and b"private" not in body


def test_an_overlong_name_is_answered_and_the_server_keeps_serving(preview):
    status, _ = raw_get(preview.url, "/blog/" + "x" * 300 + ".html")
    assert status == 404
    assert raw_get(preview.url, "/blog/2025/03/boot/")[0] == 200


def test_reload_script_is_added_to_pages_but_never_written_to_disk(site, preview):
    _, body = raw_get(preview.url, "/blog/2025/03/boot/")
    assert b"/__chronicle/events" in body
    on_disk = site / ".chronicle" / "preview" / "2025" / "03" / "boot" / "index.html"
    assert b"__chronicle" not in on_disk.read_bytes()


def test_stylesheets_are_served_untouched(site, preview):
    _, body = raw_get(preview.url, "/blog/static/chronicle.css")
    assert body == (site / ".chronicle" / "preview" / "static" / "chronicle.css").read_bytes()


def test_event_stream_announces_the_generation(preview):
    host, port = urlsplit(preview.url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/__chronicle/events")
    response = conn.getresponse()
    assert response.getheader("Content-Type") == "text/event-stream"
    assert response.fp.readline() == b"retry: 500\n"
    assert response.fp.readline() == f"data: {preview.generation}\n".encode()
    conn.close()


def test_editing_a_post_rebuilds_the_preview(site, preview):
    before = preview.generation
    (site / "posts" / "2025-03-01-boot.md").write_text(post("Boot time", "The second version."))
    wait_until(lambda: b"second version" in raw_get(preview.url, "/blog/2025/03/boot/")[1])
    wait_until(lambda: preview.generation > before)  # announced just after the swap


def test_a_rebuild_waits_while_another_process_builds_the_site(site, preview, capsys):
    before = preview.generation
    err = []
    with another_process_holding_the_lock(site) as holder:
        (site / "posts" / "2025-03-01-boot.md").write_text(post("Boot time", "Third."))
        wait_until(lambda: err.append(capsys.readouterr().err) or
                   f"pid {holder.pid}" in "".join(err))
        time.sleep(0.5)
        assert preview.generation == before
    wait_until(lambda: preview.generation > before)
    assert b"Third." in raw_get(preview.url, "/blog/2025/03/boot/")[1]


def test_broken_post_shows_its_error_then_recovers(site, preview):
    source = site / "posts" / "2025-03-01-boot.md"
    source.write_text("---\ntitle: [unclosed\ndate: 2025-03-01\n---\nBroken.\n")
    wait_until(lambda: raw_get(preview.url, "/blog/2025/03/boot/")[0] == 500)
    status, body = raw_get(preview.url, "/blog/2025/03/boot/")
    assert b"2025-03-01-boot.md:" in body and b"YAML error" in body
    assert b"/__chronicle/events" in body  # the error page reloads itself too
    source.write_text(post("Boot time", "Fixed again."))
    wait_until(lambda: b"Fixed again." in raw_get(preview.url, "/blog/2025/03/boot/")[1])


def test_server_starts_even_when_the_first_build_fails(site):
    (site / "posts" / "2025-03-01-boot.md").write_text("---\ntitle: x\n---\nno date\n")
    server = PreviewServer(BuildOptions(root=site), port=0, log=lambda line: None)
    server.start(watch=False)
    try:
        status, body = raw_get(server.url, "/blog/")
        assert status == 500 and b"missing required front matter key" in body
    finally:
        server.close()


def test_close_stops_promptly_with_an_open_event_stream(site):
    server = PreviewServer(BuildOptions(root=site), port=0, log=lambda line: None)
    server.start()
    host, port = urlsplit(server.url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/__chronicle/events")
    conn.getresponse()
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 3
    conn.close()


def test_watched_folders_are_the_sources(site, preview):
    watched = preview.watched()
    for name in ("posts", "site"):
        assert (site / name).resolve() in watched
    assert Path(site / ".chronicle").resolve() not in watched


def test_command_prints_the_url_and_exits_cleanly_on_ctrl_c(site):
    import re
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "chronicle", "serve", "--port", "0", "--root", str(site)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in process.stdout:
            found = re.search(r"previewing at (http://127\.0\.0\.1:\d+/blog/)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None
        assert raw_get(url, "/blog/2025/03/boot/")[0] == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_out_of_range_port_is_a_usage_error_not_a_traceback(capsys):
    from chronicle.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["serve", "--port", "99999"])
    assert caught.value.code == 2
    assert "not a port number" in capsys.readouterr().err
