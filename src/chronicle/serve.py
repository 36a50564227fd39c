"""``chronicle serve``: a live preview on 127.0.0.1 that rebuilds and reloads on every edit.

The site is built into ``.chronicle/preview/`` (never ``output/``), served from there
under the base URL's path (``/blog/`` when ``base_url`` is ``https://example.org/blog/``),
and rebuilt whenever something under ``posts/``, ``site/``, ``themes/`` or
``experiments/results/`` changes (watchfiles, in a thread).

Live reload: every HTML response gets a small script, added here as it is sent and
never written to disk, that listens on ``/__chronicle/events`` (Server-Sent Events) and
reloads the page when the build *generation* changes. A build that fails bumps the
generation too, and while it stays broken every page answers with the error (file and
line) instead of stale content; the next good build reloads the page again.

Only files inside the preview folder are ever served: the request path is decoded,
``..`` is refused outright, and the resolved path (symlinks followed) must still be
inside the folder.
"""

from __future__ import annotations

import html
import mimetypes
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from chronicle.config import load_config
from chronicle.errors import BuildErrors, ChronicleError
from chronicle.paths import SitePaths, site_root

if TYPE_CHECKING:  # the build and watchfiles load when a preview starts, not per CLI start
    from chronicle.build import BuildOptions
    from chronicle.model import Site

EVENTS = "/__chronicle/events"
KEEPALIVE_SECONDS = 15.0
RELOAD_SCRIPT = """<script data-chronicle-preview>
(function () {
  var generation = "%s";
  var events = new EventSource("%s");
  events.onmessage = function (event) {
    if (event.data !== generation) { events.close(); location.reload(); }
  };
})();
</script>
"""
ERROR_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Build failed</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem}
pre{white-space:pre-wrap;background:#fff3f3;border-left:4px solid #c00;padding:1rem}</style>
</head><body><h1>Build failed</h1>
<p>Fix the problem and save: this page reloads by itself.</p>
<pre class="build-error">%s</pre>
</body></html>
"""


class PreviewServer:
    """Builds, serves and watches one site. ``start()``, then ``close()``.

    ``prepare`` turns the base options into those of one build (the CLI plugs in the
    lab pages and the search index there, see :func:`chronicle.hooks.standard_hooks`).
    """

    def __init__(self, options: BuildOptions, port: int = 8000,
                 prepare: Callable[[BuildOptions], BuildOptions] = lambda o: o,
                 log: Callable[[str], None] = print):
        paths = SitePaths(options.root)
        self.paths = paths
        self.folder = (options.out or paths.cache / "preview").absolute()
        self.options = replace(options, out=self.folder)
        self.prepare = prepare
        self.port = port
        self.log = log
        self.base_path = _base_path(paths)
        self.generation = 0
        self.error: str | None = None
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._build_lock = threading.Lock()
        self._watching = threading.Event()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{self.base_path}"

    def start(self, watch: bool = True) -> None:
        self.rebuild()
        try:
            self._httpd = _Server(("127.0.0.1", self.port), _Handler, self)
        except OSError as exc:
            raise ChronicleError(f"cannot listen on 127.0.0.1:{self.port} ({exc.strerror}); "
                                 "choose another --port") from None
        httpd = self._httpd
        self._spawn(lambda: httpd.serve_forever(poll_interval=0.1), "chronicle-serve")
        if watch:
            self._spawn(self._watch, "chronicle-watch")
            self._watching.wait(timeout=10)

    def close(self) -> None:
        self.stopping.set()
        with self.changed:
            self.changed.notify_all()  # wakes event streams so their threads end
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=10)

    def rebuild(self) -> None:
        """Build once; a user's mistake becomes the error page, our bugs still raise."""
        from chronicle.build import build

        with self._build_lock:
            started = time.perf_counter()
            seen: list[Site] = []

            def remember(site: Site, renderer: object) -> list[tuple[str, bytes]]:
                seen.append(site)
                return []

            options = self.prepare(self.options)
            options = replace(options, extra_pages=(*options.extra_pages, remember))
            try:
                build(options)
            except BuildErrors as exc:
                error = "\n".join(str(e) for e in exc.errors)
            except ChronicleError as exc:
                error = str(exc)
            else:
                error = None
                self.base_path = _path_of(seen[-1].config.base_url)
            with self.changed:
                self.error = error
                self.generation += 1
                self.changed.notify_all()
            seconds = time.perf_counter() - started
            if error:
                self.log(f"build failed ({seconds:.2f} s):\n{error}")
            else:
                self.log(f"built in {seconds:.2f} s")

    def wait_for_change(self, seen: int, timeout: float) -> int:
        with self.changed:
            self.changed.wait_for(lambda: self.generation != seen or self.stopping.is_set(),
                                  timeout)
            return self.generation

    def watched(self) -> list[Path]:
        from chronicle.render import BUNDLED_THEMES

        paths = self.paths
        folders = [paths.posts, paths.root / "site", paths.themes, paths.results, BUNDLED_THEMES]
        found: list[Path] = []
        for folder in folders:
            if folder.is_dir() and folder.resolve() not in found:
                found.append(folder.resolve())
        return found

    def _watch(self) -> None:
        import watchfiles

        # yield_on_timeout: the first (empty) yield proves the watches are in place, so
        # start() can return knowing that no edit made after it is missed
        for changes in watchfiles.watch(*self.watched(), stop_event=self.stopping,
                                        debounce=400, step=30, rust_timeout=200,
                                        yield_on_timeout=True, raise_interrupt=False):
            self._watching.set()
            if self.stopping.is_set():
                break
            if not changes:
                continue
            names = sorted({Path(p).name for _, p in changes})
            self.log(f"changed: {', '.join(names[:5])}{' …' if len(names) > 5 else ''}")
            self.rebuild()

    def _spawn(self, target: Callable[[], object], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


def serve(server: PreviewServer) -> int:
    """Run until Ctrl-C: what ``chronicle serve`` does."""
    server.start()
    server.log(f"previewing at {server.url} (Ctrl-C to stop)")
    try:
        while not server.stopping.wait(3600):
            pass
    except KeyboardInterrupt:
        server.log("stopping")
    finally:
        server.close()
    return 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an open event stream must never keep the process alive

    def __init__(self, address: tuple[str, int], handler: type, preview: PreviewServer):
        self.preview = preview
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        self._respond(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(send_body=False)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the terminal shows builds, not every request

    def _respond(self, send_body: bool) -> None:
        preview = self.server.preview
        path = urlsplit(self.path).path
        if path == EVENTS:
            self._events()
            return
        base = preview.base_path
        if path in ("/", base.rstrip("/")) and base != "/":
            self._redirect(base)
            return
        file, status = resolve_request(preview.folder, base, path)
        if status == HTTPStatus.MOVED_PERMANENTLY:
            self._redirect(path + "/")
            return
        is_page = file is None or file.suffix == ".html"
        if preview.error is not None and is_page:
            body = ERROR_PAGE % html.escape(preview.error)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/html; charset=utf-8",
                       self._inject(body.encode()), send_body)
            return
        if file is None:
            missing = preview.folder / "404.html"
            if status == HTTPStatus.NOT_FOUND and missing.is_file():
                file = missing
            else:
                self._send(status, "text/plain; charset=utf-8",
                           f"{status.value} {status.phrase}\n".encode(), send_body)
                return
        try:
            data = file.read_bytes()
        except OSError:  # swapped away by a rebuild between resolve and read
            self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"404\n", send_body)
            return
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if kind.startswith("text/") or kind in ("application/json", "application/xml",
                                                "image/svg+xml", "application/javascript"):
            kind += "; charset=utf-8"
        if file.suffix == ".html":
            data = self._inject(data)
        self._send(status, kind, data, send_body)

    def _inject(self, page: bytes) -> bytes:
        script = (RELOAD_SCRIPT % (self.server.preview.generation, EVENTS)).encode()
        at = page.lower().rfind(b"</body>")
        return page[:at] + script + page[at:] if at >= 0 else page + script

    def _events(self) -> None:
        preview = self.server.preview
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        generation = preview.generation
        try:
            self.wfile.write(f"retry: 500\ndata: {generation}\n\n".encode())
            self.wfile.flush()
            while not preview.stopping.is_set():
                now = preview.wait_for_change(generation, KEEPALIVE_SECONDS)
                message = f"data: {now}\n\n" if now != generation else ": alive\n\n"
                generation = now
                self.wfile.write(message.encode())
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away

    def _redirect(self, location: str) -> None:
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, status: HTTPStatus, kind: str, data: bytes, send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")  # a preview is always fresh
        self.end_headers()
        if send_body:
            self.wfile.write(data)


def resolve_request(folder: Path, base_path: str, path: str) -> tuple[Path | None, HTTPStatus]:
    """The file inside ``folder`` a request path names, and the status to answer with.

    Refuses (403) any ``..`` segment, however encoded, and anything whose real path,
    symlinks followed, lies outside ``folder``. A name the file system cannot look up
    (a segment over 255 bytes: ``ENAMETOOLONG``) is not found (404).
    """
    try:
        return _resolve(folder, base_path, path)
    except OSError:
        return None, HTTPStatus.NOT_FOUND


def _resolve(folder: Path, base_path: str, path: str) -> tuple[Path | None, HTTPStatus]:
    decoded = unquote(path)
    if not decoded.startswith(base_path) or "\x00" in decoded:
        return None, HTTPStatus.NOT_FOUND
    parts = [p for p in decoded[len(base_path):].split("/") if p not in ("", ".")]
    if ".." in parts or any("\\" in p for p in parts):
        return None, HTTPStatus.FORBIDDEN
    root = folder.resolve()
    candidate = root.joinpath(*parts).resolve()
    if not candidate.is_relative_to(root):
        return None, HTTPStatus.FORBIDDEN
    if candidate.is_dir():
        if not decoded.endswith("/"):
            return None, HTTPStatus.MOVED_PERMANENTLY
        candidate = (candidate / "index.html").resolve()  # may itself be a symlink
        if not candidate.is_relative_to(root):
            return None, HTTPStatus.FORBIDDEN
    if not candidate.is_file():
        return None, HTTPStatus.NOT_FOUND
    return candidate, HTTPStatus.OK


def _base_path(paths: SitePaths) -> str:
    try:
        return _path_of(load_config(paths.config).base_url)
    except ChronicleError:
        return "/"  # the first build will report the broken config


def _path_of(base_url: str) -> str:
    path = urlsplit(base_url).path or "/"
    return path if path.endswith("/") else path + "/"


def register(sub: Any) -> None:
    """Add ``chronicle serve`` to the CLI's subcommands."""
    parser = sub.add_parser("serve", help="preview the site on 127.0.0.1, rebuilding on change")
    parser.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any)")
    parser.add_argument("--drafts", action="store_true", help="include posts marked draft")
    parser.add_argument("--future", action="store_true", help="include posts dated after now")
    parser.add_argument("--root", type=Path, metavar="DIR", help="site root")
    parser.set_defaults(func=_command)


def _port(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {text!r}")
    return int(text)


def _command(args: Any) -> int:
    from chronicle.build import BuildOptions
    from chronicle.hooks import standard_hooks

    options = BuildOptions(root=site_root(args.root), drafts=args.drafts,
                           future=args.future)
    return serve(PreviewServer(options, port=args.port, prepare=standard_hooks,
                               log=lambda line: print(line, flush=True)))
