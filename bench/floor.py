"""The floor: the least a Python blog generator can do with the same posts.

One process, no cache, no parallelism: read every ``posts/*.md``, split the YAML front
matter, render markdown with markdown-it-py (tables, footnotes) and Pygments, and write
post pages, a paginated index, tag pages, a tags page and an archive through Jinja2.
Chronicle does more than this (validation, TOC, feeds, embeds); the floor says what the
unavoidable part of that work costs in Python, so Chronicle's number can be read against it.

    python bench/floor.py SITE_ROOT        # writes SITE_ROOT/output/
"""

from __future__ import annotations

import shutil
import sys
from collections import defaultdict
from datetime import datetime
from html import escape
from pathlib import Path

import yaml
from jinja2 import DictLoader, Environment
from markdown_it import MarkdownIt
from mdit_py_plugins.footnote import footnote_plugin
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

PER_PAGE = 10

_BASE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{{ title }} · Bench</title></head><body>
<header><a href="/">Bench</a>
<nav><a href="/tags/">Tags</a> <a href="/archive/">Archive</a></nav></header>
<main>{% block main %}{% endblock %}</main></body></html>"""
_POST = """{% extends "base" %}{% block main %}<article><h1>{{ post.title }}</h1>
<p class="meta"><time datetime="{{ post.date.isoformat() }}">
{{- post.date.strftime('%d %B %Y') }}</time>
{% for tag in post.tags %} · <a href="/tags/{{ tag }}/">{{ tag }}</a>{% endfor %}</p>
{{ post.html }}</article>{% endblock %}"""
_LIST = """{% extends "base" %}{% block main %}<h1>{{ title }}</h1><ul class="posts">
{% for post in posts %}<li><a href="/{{ post.url }}">{{ post.title }}</a>
<time>{{ post.date.strftime('%d %B %Y') }}</time><p>{{ post.summary }}</p></li>{% endfor %}
</ul>{% if newer %}<a href="{{ newer }}">Newer</a>{% endif %}
{% if older %}<a href="{{ older }}">Older</a>{% endif %}{% endblock %}"""
_TAGS = """{% extends "base" %}{% block main %}<h1>Tags</h1><ul>{% for tag, n in tags %}
<li><a href="/tags/{{ tag }}/">{{ tag }}</a> ({{ n }})</li>{% endfor %}</ul>{% endblock %}"""


def _highlight(code: str, lang: str, _attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(lang)
    except ClassNotFound:
        return f"<pre><code>{escape(code)}</code></pre>"
    return highlight(code, lexer, _FORMATTER)


_FORMATTER = HtmlFormatter(cssclass="highlight")


def _read(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    when = meta["date"]
    date = when if isinstance(when, datetime) else datetime.fromisoformat(str(when))
    slug = path.stem[11:]  # drop the YYYY-MM-DD- prefix
    return {"title": meta["title"], "date": date, "tags": meta.get("tags", []),
            "summary": meta.get("summary", ""), "body": body,
            "url": f"{date:%Y/%m}/{slug}/"}


def _write(path: Path, html: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")


def _pages(env: Environment, out: Path, prefix: str, title: str, posts: list[dict]) -> None:
    chunks = [posts[i:i + PER_PAGE] for i in range(0, len(posts), PER_PAGE)] or [[]]
    for number, chunk in enumerate(chunks, start=1):
        here = f"{prefix}page/{number}/" if number > 1 else prefix
        newer = "" if number == 1 else (
            f"/{prefix}page/{number - 1}/" if number > 2 else f"/{prefix}")
        older = f"/{prefix}page/{number + 1}/" if number < len(chunks) else ""
        _write(out / here / "index.html", env.get_template("list").render(
            title=title, posts=chunk, newer=newer, older=older))


def build(root: Path) -> int:
    md = MarkdownIt("commonmark", {"highlight": _highlight, "typographer": True})
    md.enable(["table", "replacements", "smartquotes"]).use(footnote_plugin)
    templates = {"base": _BASE, "post": _POST, "list": _LIST, "tags": _TAGS}
    env = Environment(loader=DictLoader(templates), autoescape=False)

    posts = [_read(path) for path in sorted((root / "posts").glob("*.md"))]
    posts.sort(key=lambda post: post["date"], reverse=True)
    out = root / "output"
    shutil.rmtree(out, ignore_errors=True)
    by_tag: dict[str, list[dict]] = defaultdict(list)
    post_template = env.get_template("post")
    for post in posts:
        post["html"] = md.render(post["body"])
        html = post_template.render(title=post["title"], post=post)
        _write(out / post["url"] / "index.html", html)
        for tag in post["tags"]:
            by_tag[tag].append(post)
    _pages(env, out, "", "Bench", posts)
    for tag, tagged in by_tag.items():
        _pages(env, out, f"tags/{tag}/", f"Tagged {tag}", tagged)
    _write(out / "tags" / "index.html", env.get_template("tags").render(
        title="Tags", tags=sorted((tag, len(p)) for tag, p in by_tag.items())))
    _write(out / "archive" / "index.html", env.get_template("list").render(
        title="Archive", posts=posts, newer="", older=""))
    return len(posts)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: floor.py SITE_ROOT")
    count = build(Path(sys.argv[1]))
    print(f"floor: {count} posts", file=sys.stderr)
