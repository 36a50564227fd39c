"""Reading a Jekyll site: ``_config.yml``, ``_posts/`` (and ``CATEGORY/_posts/``),
``_drafts/``, pages with front matter, and every plain file it would copy as is.

A post's date comes from its front matter or else its ``YYYY-MM-DD-title.md`` name;
its old URL is its ``permalink`` or the site's permalink style (``date`` by default:
``/:categories/:year/:month/:day/:title.html``), plus each of its ``redirect_from``.
The tags ``highlight`` (with ``linenos`` and ``mark_lines``), ``link``, ``post_url``
and ``raw``, and the values ``site.baseurl``, ``site.*`` strings and ``relative_url`` /
``absolute_url`` become markdown; any other Liquid is left in the text and noted.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from chronicle.content import slugify
from chronicle.errors import BuildError
from chronicle.importers.common import (
    Document,
    Note,
    OldSite,
    Plan,
    Resolver,
    chronicle_tags,
    line_at,
    old_site_path,
    plain,
    tag_list,
)
from chronicle.importers.frontmatter import code_fence, key_line, line_ranges, loose_date, split

STYLES = {
    "date": "/:categories/:year/:month/:day/:title:output_ext",
    "pretty": "/:categories/:year/:month/:day/:title/",
    "ordinal": "/:categories/:year/:y_day/:title:output_ext",
    "none": "/:categories/:title:output_ext",
}
POST_NAME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})-(.+)$")
MARKDOWN = (".md", ".markdown", ".mkd", ".mkdn")
# what Jekyll leaves out of every site unless told otherwise
EXCLUDED = {"Gemfile", "Gemfile.lock", "node_modules", "vendor", "gemfiles"}
USED_KEYS = {"title", "date", "tags", "categories", "category", "excerpt", "description",
             "published", "last_modified_at", "permalink", "redirect_from", "slug"}


def read_site(src: Path) -> OldSite:
    config = read_config(src)
    style = str(config.get("permalink") or "date")
    base = str(config.get("url") or "").rstrip("/") + str(config.get("baseurl") or "")
    excluded = EXCLUDED | {str(e).strip("/") for e in config.get("exclude") or []}
    documents, notes, static = [], [], {}
    for path in sorted(src.rglob("*")):
        relative = path.relative_to(src)
        parts = relative.parts
        if (not path.is_file() or any(p.startswith(".") for p in parts)
                or parts[0] in excluded or relative.as_posix() in excluded):
            continue
        in_posts = "_posts" in parts[:-1] or parts[0] == "_drafts"
        if not in_posts and any(p.startswith("_") for p in parts):
            continue  # _layouts, _includes, _data, _site, _config.yml …
        with path.open("rb") as handle:
            has_front_matter = handle.read(4).rstrip(b"\r\n") == b"---"
        if path.suffix not in MARKDOWN or not (has_front_matter or in_posts):
            if in_posts or has_front_matter:
                notes.append(Note(path, None, "not markdown: a Liquid template, not imported"))
            else:
                static[relative.as_posix()] = path
            continue
        found = read_post(path, relative, style, base, notes) if in_posts else \
            read_page(path, relative, style, base, notes)
        if found is not None:
            documents.append(found)
    return OldSite("jekyll", src, str(config.get("title") or ""), base or "/",
                   tuple(documents), static, tuple(notes))


def read_config(src: Path) -> dict[str, Any]:
    path = src / "_config.yml"
    if not path.is_file():
        path = src / "_config.yaml"
    if not path.is_file():
        raise BuildError("no _config.yml here: is this a Jekyll site?", src)
    try:
        config = yaml.safe_load(path.read_text("utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise BuildError(f"YAML error: {getattr(exc, 'problem', exc)}", path,
                         mark.line + 1 if mark else None) from None
    if not isinstance(config, dict):
        raise BuildError("the config must be a mapping of keys to values", path)
    return config


def _read(path: Path) -> tuple[dict[str, Any], str, int, list[str]]:
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise BuildError("file is not valid UTF-8", path) from None
    return split(text, path, "yaml") or ({}, text, 1, [])


def read_post(path: Path, relative: Path, style: str, base: str, notes: list[Note]
              ) -> Document | None:
    meta, body, body_line, lines = _read(path)
    name = path.name.rsplit(".", 1)[0]
    named = POST_NAME.match(name)
    title_part = named.group(4) if named else name
    when: date | None = None
    if meta.get("date") is not None:
        when = loose_date(meta["date"], path, key_line(lines, "date"))
    elif named:
        try:
            when = date(*map(int, named.groups()[:3]))
        except ValueError:
            raise BuildError(f"impossible date in the file name {path.name!r}", path) from None
    if when is None:
        notes.append(Note(path, None, "a draft without a date: not imported"))
        return None
    folders = list(relative.parts[:relative.parts.index("_posts")]) \
        if "_posts" in relative.parts else []
    categories = folders + tag_list(meta.get("categories")) + tag_list(meta.get("category"))
    tags = chronicle_tags(tag_list(meta.get("tags")) + categories, path, notes)
    slug_part = str(meta.get("slug") or title_part)
    values = {
        "year": f"{when:%Y}", "month": f"{when:%m}", "i_month": str(when.month),
        "day": f"{when:%d}", "i_day": str(when.day), "short_year": f"{when:%y}",
        "y_day": f"{when.timetuple().tm_yday:03d}", "title": slug_part,
        "slug": slugify(slug_part), "output_ext": ".html",
        "categories": "/".join(dict.fromkeys(c.lower() for c in categories)),
    }
    pattern = str(meta.get("permalink") or STYLES.get(style, style))
    permalink = re.sub(r":(\w+)", lambda m: values.get(m.group(1), m.group(0)), pattern)
    meta_out: dict[str, Any] = {}
    if tags:
        meta_out["tags"] = tags
    summary = meta.get("excerpt") or meta.get("description")
    if isinstance(summary, str) and summary.strip():
        meta_out["summary"] = summary.strip()
    if meta.get("published") is False or relative.parts[0] == "_drafts":
        meta_out["draft"] = True
    if meta.get("last_modified_at") is not None:
        meta_out["updated"] = loose_date(meta["last_modified_at"], path,
                                         key_line(lines, "last_modified_at"))
    imported = {k: v for k, v in meta.items() if k not in USED_KEYS}
    if meta.get("excerpt") and meta.get("description"):
        imported["description"] = meta["description"]
    title = str(meta.get("title") or "").strip() or \
        " ".join(w.capitalize() for w in title_part.split("-"))
    post_names = {name, "/".join([*relative.parts[1:-1], name])} \
        if relative.parts[0] == "_posts" else {name}
    return Document(
        source=path, kind="post", slug=slugify(slug_part), title=title, body=body,
        body_line=body_line, date=when, meta=meta_out, imported=plain(imported),
        old_urls=_old_urls([permalink, *_redirects(meta)], base, path, notes),
        keys=(("link", relative.as_posix()), *(("post_url", n) for n in sorted(post_names))),
    )


def read_page(path: Path, relative: Path, style: str, base: str, notes: list[Note]
              ) -> Document | None:
    meta, body, body_line, lines = _read(path)
    folder = "/".join(relative.parts[:-1])
    stem = path.name.rsplit(".", 1)[0]
    if stem == "index" and not folder:
        notes.append(Note(path, None, "the home page: not imported (Chronicle makes its own)"))
        return None
    name = relative.parts[-2] if stem == "index" else stem
    pretty = style == "pretty" or STYLES.get(style, style).endswith("/")
    if meta.get("permalink"):
        permalink = str(meta["permalink"])
    elif stem == "index":
        permalink = f"/{folder}/"
    else:
        permalink = f"/{folder}/{stem}/" if pretty else f"/{folder}/{stem}.html"
    title = str(meta.get("title") or "").strip() or name.replace("-", " ").capitalize()
    summary = meta.get("excerpt") or meta.get("description")
    imported = {k: v for k, v in meta.items() if k not in {"title", "permalink",
                                                            "redirect_from"}}
    if isinstance(summary, str) and summary.strip():
        imported.pop("excerpt" if meta.get("excerpt") else "description")
    return Document(
        source=path, kind="page", slug=slugify(name), title=title, body=body,
        body_line=body_line,
        meta={"summary": summary.strip()} if isinstance(summary, str) and summary.strip()
        else {},
        imported=plain(imported),
        old_urls=_old_urls([permalink, *_redirects(meta)], base, path, notes),
        keys=(("link", relative.as_posix()),),
    )


def _redirects(meta: dict[str, Any]) -> list[str]:
    found = meta.get("redirect_from") or []
    return [found] if isinstance(found, str) else [str(u) for u in found]


def _old_urls(urls: list[str], base: str, path: Path, notes: list[Note]) -> tuple[str, ...]:
    kept: list[str] = []
    for url in urls:
        found = old_site_path(re.sub(r"/{2,}", "/", url), base)
        if found is None:
            notes.append(Note(path, None, f"old URL {url!r} cannot be kept: not a plain path"))
        elif found not in kept:
            kept.append(found)
    return tuple(kept)


# -- Liquid -------------------------------------------------------------------------------

LIQUID = re.compile(
    r"\{%-?\s*raw\s*-?%\}(?P<raw>.*?)\{%-?\s*endraw\s*-?%\}"
    r"|\{%-?\s*highlight\s+(?P<hargs>.*?)\s*-?%\}[ \t]*\n?(?P<code>.*?)"
    r"\{%-?\s*endhighlight\s*-?%\}"
    # a link tag's own base URL goes: the link made is relative, good under any base
    r"|(?:\{\{-?\s*site\.baseurl\s*-?\}\})?\{%-?\s*(?P<link>link|post_url)\s+(?P<largs>.*?)"
    r"\s*-?%\}"
    r"|\{%-?\s*(?P<tag>\w+)(?P<targs>.*?)\s*-?%\}"
    r"|\{\{-?\s*(?P<expr>.*?)\s*-?\}\}",
    re.DOTALL)
URL_FILTER = re.compile(
    r"""^(["'])(?P<path>[^"']*)\1\s*\|\s*(?P<filter>relative_url|absolute_url)$""")


def converter(config: dict[str, Any]) -> Any:
    """The body converter for a site with ``config``: ``site.*`` values come from it."""
    url = str(config.get("url") or "").rstrip("/")
    baseurl = str(config.get("baseurl") or "").rstrip("/")

    def convert(doc: Document, resolve: Resolver, plan: Plan) -> str:
        def one(match: re.Match[str]) -> str:
            line = line_at(doc.body, match.start(), doc.body_line)
            if match.group("raw") is not None:
                return match.group("raw")
            if match.group("hargs") is not None:
                return _highlight(match.group("hargs"), match.group("code"), plan)
            if match.group("link") is not None:
                return _link(match, doc, line, resolve, plan)
            if match.group("tag") is not None:
                plan.notes.append(Note(doc.source, line, f"Liquid tag {match.group('tag')!r} "
                                       "not converted: left as it was"))
                return match.group(0)
            expr = match.group("expr")
            value = _value(expr, config, url, baseurl)
            if value is None:
                plan.notes.append(Note(doc.source, line, f"Liquid {{{{ {expr} }}}} not "
                                       "converted: left as it was"))
                return match.group(0)
            plan.converted["site value"] += 1
            return value

        return LIQUID.sub(one, doc.body)

    return convert


def _value(expr: str, config: dict[str, Any], url: str, baseurl: str) -> str | None:
    if expr == "site.baseurl":
        return baseurl
    if expr == "site.url":
        return url
    filtered = URL_FILTER.match(expr)
    if filtered:
        path = "/" + filtered.group("path").lstrip("/")
        return (url if filtered.group("filter") == "absolute_url" else "") + baseurl + path
    key = expr.removeprefix("site.")
    if expr.startswith("site.") and isinstance(config.get(key), str | int | float):
        return str(config[key])
    return None


def _highlight(args: str, code: str, plan: Plan) -> str:
    language, _, options = args.strip().partition(" ")
    marks = re.search(r"""mark_lines\s*=\s*["']([^"']*)["']""", options)
    plan.converted["highlight"] += 1
    return code_fence(language, code, line_ranges(marks.group(1)) if marks else "",
                      "linenos" in options)


def _link(match: re.Match[str], doc: Document, line: int, resolve: Resolver,
          plan: Plan) -> str:
    tag, argument = match.group("link"), match.group("largs").strip().strip("\"'")
    found = resolve(tag, argument.lstrip("/") if tag == "link" else argument)
    if found is not None:
        plan.converted[tag] += 1
        return found
    plan.notes.append(Note(doc.source, line, f"{tag} to {argument!r}: no such document in "
                           "the import; left as it was"))
    return match.group(0)
