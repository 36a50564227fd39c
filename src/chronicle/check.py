"""``chronicle check``: every link, anchor and image in the built site resolves.

The site is built first (so a bad post, template or embedded result reference is
reported as the build reports it), then every HTML file in the output is read and each
reference checked against the output folder itself, not against the sources: what is
checked is exactly what would be published.

- links (``a``, ``link``, ``iframe``, ``form`` …) and images (``img``, ``source``,
  ``video`` poster …) must name a file in the output; a folder URL needs its
  ``index.html``;
- a ``#fragment`` must be an ``id`` (or ``<a name>``) in the target page;
- a root-relative URL must stay under the base URL's path (``/blog/``), and an absolute
  URL on the site's own host is checked like a relative one;
- external URLs are only fetched with ``external=True`` (``--external``).

Old URLs kept as redirect pages (``aliases`` in front matter) are listed, each with the
page it leads to; the redirect page's link is checked like every other.

Each problem names the post and line it comes from when the link is in a post's text;
otherwise (templates, generated pages) the output file and its line.

The command also notes, without failing, the site's theme files that an upgrade of
Chronicle does not reach (:func:`chronicle.theme.upgrade_notes`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit

from chronicle.errors import BuildError

if TYPE_CHECKING:  # the build (Jinja, the model) loads only when a check runs, not per CLI start
    from chronicle.build import BuildOptions, BuildReport
    from chronicle.model import Site

# element → attributes holding a URL, and whether that URL is an image
URL_ATTRIBUTES: dict[str, tuple[tuple[str, bool], ...]] = {
    "a": (("href", False),),
    "area": (("href", False),),
    "link": (("href", False),),
    "iframe": (("src", False),),
    "form": (("action", False),),
    "script": (("src", False),),
    "embed": (("src", False),),
    "object": (("data", False),),
    "track": (("src", False),),
    "img": (("src", True), ("srcset", True)),
    "source": (("src", True), ("srcset", True)),
    "video": (("src", False), ("poster", True)),
    "audio": (("src", False),),
    "image": (("href", True),),  # inside inline SVG
    "use": (("href", False),),
}
# <link rel=...> values that name another origin's host, not a resource to check
HINT_RELS = {"preconnect", "dns-prefetch"}
SKIPPED_SCHEMES = ("mailto:", "tel:", "data:", "javascript:", "about:", "blob:")
# "#top" scrolls to the top of any page, as HTML specifies, with or without such an id
IMPLICIT_FRAGMENTS = {"", "top"}


@dataclass(frozen=True)
class Problem:
    message: str
    path: Path
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Reference:
    url: str
    line: int
    image: bool


@dataclass(frozen=True)
class Source:
    """Where an output page's text comes from: a post or page file and its body's line."""

    path: Path
    body_line: int = 1


@dataclass
class _Page:
    ids: set[str]
    references: list[Reference]


def check_site(options: BuildOptions, external: bool = False
               ) -> tuple[BuildReport, list[Problem]]:
    """Build with ``options`` (a :class:`BuildError` if that fails), then check the output."""
    report, problems, _ = _build_and_check(options, external)
    return report, problems


def _build_and_check(options: BuildOptions, external: bool
                     ) -> tuple[BuildReport, list[Problem], Site]:
    from chronicle.build import build

    seen: list[Site] = []

    def remember(site: Site, renderer: object) -> list[tuple[str, bytes]]:
        seen.append(site)  # the model maps each output page back to its post
        return []

    report = build(replace(options, extra_pages=(*options.extra_pages, remember)))
    site = seen[-1]
    problems = check_output(report.out, site.config.base_url, build_sources(site), external)
    return report, problems, site


def redirect_lines(site: Site) -> list[str]:
    """The site's old URLs and where each now leads: what an import or a rename keeps.
    Each redirect page's link to its target is checked like any other link."""
    return [f"alias /{r.url} -> /{r.target} ({r.source.name})" for r in site.redirects]


def check_output(out: Path, base_url: str = "/", sources: Mapping[str, Source] | None = None,
                 external: bool = False,
                 fetch: Callable[[str], str | None] | None = None) -> list[Problem]:
    """Every problem in the built site at ``out``, sorted by file and line.

    ``base_url`` is the site's (``https://example.org/blog/`` or just its path);
    ``sources`` maps output files (``2025/03/x/index.html``) to the documents they show.
    """
    split = urlsplit(base_url)
    base_path = split.path if split.path.endswith("/") else split.path + "/"
    own_origin = f"{split.scheme}://{split.netloc}" if split.netloc else None
    pages = {name: _read_page(out / name) for name in _html_files(out)}
    id_cache: dict[str, set[str]] = {name: page.ids for name, page in pages.items()}
    problems: list[Problem] = []
    external_refs: dict[str, list[tuple[str, Reference]]] = {}
    for name, page in sorted(pages.items()):
        for ref in page.references:
            url = ref.url.strip()
            if own_origin and url.startswith(own_origin + "/"):
                url = url[len(own_origin):]
            if url.startswith(("http://", "https://", "//")):
                external_refs.setdefault(url, []).append((name, ref))
                continue
            if url.lower().startswith(SKIPPED_SCHEMES) or ":" in url.split("/")[0]:
                continue
            message = _resolve(out, base_path, name, url, ref.image, pages, id_cache)
            if message:
                problems.append(_locate(message, name, ref, url, sources or {}, out))
    if external:
        problems += _check_external(external_refs, sources or {}, out, fetch or head_status)
    return sorted(problems, key=lambda p: (str(p.path), p.line or 0, p.message))


def head_status(url: str, timeout: float = 10.0) -> str | None:
    """None when ``url`` answers 2xx/3xx; otherwise what went wrong."""
    import urllib.error  # only --external fetches; http.client is costly to load
    import urllib.request

    for method in ("HEAD", "GET"):  # some servers refuse HEAD but serve GET
        request = urllib.request.Request(url, method=method,
                                         headers={"User-Agent": "chronicle-check"})
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                return None
        except urllib.error.HTTPError as exc:
            if method == "HEAD" and exc.code in (403, 405, 501):
                continue
            return f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"unreachable ({reason})"
    return None


def _resolve(out: Path, base_path: str, name: str, url: str, image: bool,
             pages: Mapping[str, _Page], id_cache: dict[str, set[str]]) -> str | None:
    what = "image" if image else "link"
    joined = urljoin(base_path + name, url)
    parts = urlsplit(joined)
    path = unquote(parts.path)
    if not path.startswith(base_path):
        return f"broken {what} {url!r}: outside the site's base path {base_path}"
    relative = path[len(base_path):]
    if relative == "" or relative.endswith("/"):
        relative += "index.html"
    target = _existing(out, relative)
    if target is None:
        return f"broken {what} {url!r}: no {relative} in the output"
    fragment = unquote(parts.fragment)
    if fragment in IMPLICIT_FRAGMENTS or not target.endswith(".html"):
        return None
    if target not in id_cache:
        id_cache[target] = _read_page(out / target).ids
    if fragment not in id_cache[target]:
        return f"missing anchor {url!r}: no id {fragment!r} in {target}"
    return None


def _existing(out: Path, relative: str) -> str | None:
    """The output file a URL path names, or None; refuses anything outside ``out``."""
    candidate = (out / relative).resolve()
    root = out.resolve()
    if not candidate.is_relative_to(root):
        return None
    if candidate.is_file():
        return relative
    if candidate.is_dir() and (candidate / "index.html").is_file():
        return f"{relative.rstrip('/')}/index.html"  # servers redirect /a to /a/
    return None


def _locate(message: str, name: str, ref: Reference, url: str,
            sources: Mapping[str, Source], out: Path) -> Problem:
    """Blame the post line holding the URL; else the output file and line."""
    source = sources.get(name)
    if source is not None:
        line = _line_of(source, [ref.url, url, unquote(url)])
        if line is not None:
            return Problem(f"{message} (in {name})", source.path, line)
    return Problem(message, out / name, ref.line)


def _line_of(source: Source, needles: Iterable[str]) -> int | None:
    try:
        lines = source.path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    start = max(source.body_line - 1, 0)
    for needle in dict.fromkeys(n for n in needles if n):
        for number, text in enumerate(lines[start:], start=start + 1):
            if needle in text:
                return number
    return None


def _check_external(refs: Mapping[str, list[tuple[str, Reference]]],
                    sources: Mapping[str, Source], out: Path,
                    fetch: Callable[[str], str | None]) -> list[Problem]:
    urls = sorted(refs)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(fetch, urls))
    problems = []
    for url, answer in zip(urls, answers, strict=True):
        if answer is None:
            continue
        for name, ref in refs[url]:
            problems.append(_locate(f"broken external link {url!r}: {answer}", name, ref, url,
                                    sources, out))
    return problems


def _html_files(out: Path) -> list[str]:
    if not out.is_dir():
        raise BuildError("no built site to check", out)
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html")
                  if p.is_file() and not p.is_symlink())


def _read_page(path: Path) -> _Page:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return _Page(parser.ids, parser.references)


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.references: list[Reference] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value for key, value in attrs if value is not None}
        line = self.getpos()[0]
        if "id" in values:
            self.ids.add(values["id"])
        if tag == "a" and "name" in values:
            self.ids.add(values["name"])
        if tag == "link" and HINT_RELS & set(values.get("rel", "").lower().split()):
            return
        for attribute, image in URL_ATTRIBUTES.get(tag, ()):
            value = values.get(attribute) or values.get(f"xlink:{attribute}")
            if not value:
                continue
            urls = _srcset(value) if attribute == "srcset" else [value]
            self.references += [Reference(url, line, image) for url in urls]


def _srcset(value: str) -> list[str]:
    return [item.split()[0] for item in value.split(",") if item.strip()]


def build_sources(site: Site) -> dict[str, Source]:
    """Output file → source document, for every post and page of the site model."""
    from chronicle.render import output_file

    found = {output_file(e.url): Source(e.post.source, e.post.body_line) for e in site.entries}
    found.update({output_file(p.url): Source(p.page.source, p.page.body_line)
                  for p in site.pages})
    return found


def register(sub: Any) -> None:
    """Add ``chronicle check`` to the CLI's subcommands."""
    parser = sub.add_parser("check", help="build, then check every link, anchor and image")
    parser.add_argument("--external", action="store_true",
                        help="also fetch external links (off by default: no network)")
    parser.add_argument("--root", type=Path, metavar="DIR", help="site root")
    parser.set_defaults(func=_command)


def _command(args: Any) -> int:
    from chronicle.build import BuildOptions
    from chronicle.config import load_config
    from chronicle.hooks import standard_hooks
    from chronicle.paths import SitePaths, site_root
    from chronicle.theme import upgrade_notes

    root = site_root(args.root)
    # its own folder: checking never disturbs output/ or the preview
    options = standard_hooks(BuildOptions(root=root, out=SitePaths(root).cache / "check"))
    report, problems, site = _build_and_check(options, external=args.external)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    # a note, not a problem: a template may differ from the installed one on purpose
    for note in upgrade_notes(SitePaths(root), load_config(SitePaths(root).config).theme):
        print(f"note: {note}", file=sys.stderr)
    for line in redirect_lines(site):
        print(line)
    for problem in problems:
        print(problem)
    pages = report.pages
    if problems:
        print(f"check failed: {len(problems)} problem(s) in {pages} pages", file=sys.stderr)
        return 1
    print(f"checked {pages} pages: every link, anchor and image resolves")
    return 0
