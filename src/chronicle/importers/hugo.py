"""Reading a Hugo site: its config, ``content/`` (page bundles too) and ``static/``.

A file in a section (``content/posts/x.md``, ``content/posts/x/index.md``) with a date
is a post; a top-level one (``content/about.md``) or one without a date is a page.
Its old URL is what Hugo gave it: front matter ``url``, else the section's pattern in
``[permalinks]``, else its path (``/posts/x/``), lower-cased as Hugo does, and each of
its ``aliases``. Shortcodes ``highlight``, ``figure``, ``ref`` and ``relref`` become
markdown; the code fence attributes ``{hl_lines=[2], linenos=true}`` become
Chronicle's fence options; any other shortcode is left in the text and noted.
"""

from __future__ import annotations

import json
import re
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from chronicle.content import slugify
from chronicle.errors import BuildError, toml_error_line
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
from chronicle.importers.frontmatter import (
    DATE_PREFIX,
    code_fence,
    date_from_name,
    key_line,
    line_ranges,
    loose_date,
    split,
)

CONFIG_FILES = ("hugo.toml", "hugo.yaml", "hugo.yml", "hugo.json",
                "config.toml", "config.yaml", "config.yml", "config.json")
DATE_KEYS = ("date", "publishdate", "pubdate", "published")
# front matter keys that become Chronicle's own (or decide the URL); the rest is kept
USED_KEYS = {"title", *DATE_KEYS, "lastmod", "tags", "categories", "summary", "description",
             "draft", "aliases", "slug", "url"}


def read_site(src: Path) -> OldSite:
    config = read_config(src)
    content = src / str(config.get("contentdir", "content"))
    if not content.is_dir():
        raise BuildError("no content folder here: is this a Hugo site?", content)
    documents, notes = [], []
    for path in sorted(content.rglob("*")):
        relative = path.relative_to(content)
        if (path.suffix not in (".md", ".markdown") or not path.is_file()
                or any(part.startswith(".") for part in relative.parts)):
            continue
        if path.stem == "_index":
            notes.append(Note(path, None, "a section's list page: not imported (Chronicle "
                                          "makes its own lists)"))
            continue
        found = read_document(path, content, config)
        notes += found[1]
        documents.append(found[0])
    static: dict[str, Path] = {}
    folders = config.get("staticdir", "static")
    for folder in [folders] if isinstance(folders, str) else list(folders):
        root = src / str(folder)
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            relative = path.relative_to(root).as_posix()
            if path.is_file() and not any(p.startswith(".") for p in relative.split("/")):
                static[relative] = path
    return OldSite("hugo", src, str(config.get("title", "")), str(config.get("baseurl", "/")),
                   tuple(documents), static, tuple(notes))


def read_config(src: Path) -> dict[str, Any]:
    """The site's config with its top-level keys lower-cased (Hugo ignores their case)."""
    candidates = [src / name for name in CONFIG_FILES]
    candidates += [src / "config" / "_default" / name for name in CONFIG_FILES]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise BuildError(f"no Hugo config here ({', '.join(CONFIG_FILES[:2])} or "
                         "config.toml): is this a Hugo site?", src)
    text = path.read_text("utf-8")
    try:
        if path.suffix == ".toml":
            config = tomllib.loads(text)
        elif path.suffix == ".json":
            config = json.loads(text)
        else:
            config = yaml.safe_load(text) or {}
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"TOML error: {str(exc).split(' (at')[0]}", path,
                         toml_error_line(exc)) from None
    except json.JSONDecodeError as exc:
        raise BuildError(f"JSON error: {exc.msg}", path, exc.lineno) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise BuildError(f"YAML error: {getattr(exc, 'problem', exc)}", path,
                         mark.line + 1 if mark else None) from None
    if not isinstance(config, dict):
        raise BuildError("the config must be a mapping of keys to values", path)
    return {str(k).lower(): v for k, v in config.items()}


def read_document(path: Path, content: Path, config: dict[str, Any]
                  ) -> tuple[Document, list[Note]]:
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError:
        raise BuildError("file is not valid UTF-8", path) from None
    notes: list[Note] = []
    parsed = split(text, path)
    meta, body, body_line, fm_lines = parsed or ({}, text, 1, [])
    keys = {str(k).lower(): k for k in meta}

    def get(key: str) -> Any:
        return meta.get(keys[key]) if key in keys else None

    bundle = path.parent if path.stem == "index" else None
    logical = (path.parent if bundle else path.with_suffix("")).relative_to(content)
    parts = logical.parts
    name = parts[-1] if parts else "index"
    from_filename = ":filename" in str(config.get("frontmatter", ""))
    when = next((loose_date(get(k), path, key_line(fm_lines, keys[k]))
                 for k in DATE_KEYS if get(k) is not None), None)
    if when is None and from_filename:
        when = date_from_name(name)
    if from_filename and date_from_name(name):
        name = DATE_PREFIX.sub("", name)
    section = parts[0] if len(parts) > 1 else ""
    kind = "post" if section and when is not None else "page"
    if section and when is None:
        notes.append(Note(path, None, "no date: imported as a page"))
    title = str(get("title") or "").strip()
    if not title:
        title = name.replace("-", " ").strip().capitalize() or "Untitled"
        notes.append(Note(path, None, f"no title: called it {title!r}"))
    slug = slugify(str(get("slug") or name))
    meta_out: dict[str, Any] = {}
    # a string is one term in Hugo (in Jekyll, words): "machine learning" stays whole
    terms = [[v] if isinstance(v, str) else tag_list(v) for v in (get("tags"), get("categories"))]
    tags = chronicle_tags(terms[0] + terms[1], path, notes)
    if tags and kind == "post":
        meta_out["tags"] = tags
    summary = get("summary") or get("description")
    if isinstance(summary, str) and summary.strip():
        meta_out["summary"] = summary.strip()
    if get("draft") is True and kind == "post":
        meta_out["draft"] = True
    elif get("draft") is True:
        notes.append(Note(path, None, "a draft page: imported as a page, which Chronicle "
                                      "always publishes"))
    if get("lastmod") is not None and kind == "post":
        meta_out["updated"] = loose_date(get("lastmod"), path, key_line(fm_lines, keys["lastmod"]))
    imported = {k: v for k, v in meta.items() if str(k).lower() not in USED_KEYS}
    if kind == "page":  # what a page has no place for is kept, not dropped
        imported.update({keys[k]: get(k) for k in ("tags", "categories", "draft", "lastmod",
                                                   *DATE_KEYS) if get(k) is not None})
    if get("summary") and get("description"):
        imported[keys["description"]] = get("description")
    old = [_permalink(get, parts, name, title, when, config)]
    folder = "/".join(parts[:-1])
    aliases = get("aliases") or []
    for alias in map(str, [aliases] if isinstance(aliases, str) else aliases):
        old.append(alias if alias.startswith("/") else f"/{folder}/{alias}")
    old_urls = []
    for url in old:
        found = old_site_path(url, str(config.get("baseurl", "/")))
        if found is None:
            notes.append(Note(path, None, f"old URL {url!r} cannot be kept: not a plain path"))
        elif found not in old_urls:
            old_urls.append(found)
    logical_key = logical.as_posix()
    # how a ref/relref may name it: its path in content/, or just its name
    refs = {logical_key, f"{logical_key}.md", name, f"{name}.md",
            *([parts[-1], f"{parts[-1]}.md"] if parts else [])}
    return Document(
        source=path, kind=kind, slug=slug, title=title, body=body, body_line=body_line,
        date=when if kind == "post" else None, meta=meta_out, imported=plain(imported),
        old_urls=tuple(old_urls), bundle=bundle,
        keys=tuple(sorted(("ref", r.lower()) for r in refs if r)),
    ), notes


def _permalink(get: Any, parts: tuple[str, ...], name: str, title: str, when: date | None,
               config: dict[str, Any]) -> str:
    """The URL Hugo gave the page, relative to the base URL."""
    if get("url"):
        return str(get("url"))
    section = parts[0] if len(parts) > 1 else ""
    permalinks = config.get("permalinks") or {}
    if isinstance(permalinks.get("page"), dict):  # Hugo ≥ 0.120 nests them by kind
        permalinks = permalinks["page"]
    pattern = permalinks.get(section) if section else None
    slug = str(get("slug") or "")
    if pattern and when is not None:
        values = {
            "year": f"{when:%Y}", "month": f"{when:%m}", "monthname": f"{when:%B}",
            "day": f"{when:%d}", "weekday": str(when.isoweekday() % 7),
            "weekdayname": f"{when:%A}", "yearday": str(when.timetuple().tm_yday),
            "section": section, "sections": "/".join(parts[:-1]),
            "title": title, "slug": slug or title, "filename": name,
            "contentbasename": name, "slugorfilename": slug or name,
            "slugorcontentbasename": slug or name,
        }
        path = re.sub(r":(\w+)", lambda m: values.get(m.group(1), m.group(0)), str(pattern))
    elif config.get("uglyurls"):
        path = "/".join([*parts[:-1], slug or name]) + ".html"
    else:
        path = "/".join([*parts[:-1], slug or name]) + "/"
    path = "/" + _sanitize(path).strip("/") + ("/" if path.endswith("/") else "")
    return path if config.get("disablepathtolower") else path.lower()


def _sanitize(path: str) -> str:
    # what Hugo keeps of a path: letters, digits and a few marks; spaces become hyphens
    return "".join("-" if c == " " else c for c in path
                   if c == " " or c.isalnum() or c in "%./\\_-#+~")


# -- shortcodes ---------------------------------------------------------------------------

FENCE_ATTRIBUTES = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+#.-]*)"
                              r"[ \t]*\{(?P<attrs>[^}\n]*)\}[ \t]*$", re.MULTILINE)
SHORTCODE = re.compile(
    r"\{\{(?P<escaped>[<%])\s*/\*(?P<inner>.*?)\*/\s*[>%]\}\}"
    r"|\{\{[<%]\s*highlight\s+(?P<hargs>.*?)\s*[>%]\}\}[ \t]*\n?(?P<code>.*?)"
    r"\{\{[<%]\s*/highlight\s*[>%]\}\}"
    r"|\{\{[<%]\s*(?P<name>/?[\w-]+)(?P<args>.*?)\s*[>%]\}\}",
    re.DOTALL)
PARAM = re.compile(r"""(?:(\w+)=)?("[^"]*"|`[^`]*`|[^\s"`]+)""")


def convert(doc: Document, resolve: Resolver, plan: Plan) -> str:
    """``doc``'s body with its shortcodes and fence attributes in Chronicle's markdown."""
    body = FENCE_ATTRIBUTES.sub(lambda m: _fence_attributes(m, doc, plan), doc.body)

    def one(match: re.Match[str]) -> str:
        line = line_at(body, match.start(), doc.body_line)
        if match.group("escaped"):  # {{</* x */>}} is how Hugo shows a shortcode as text
            kind = match.group("escaped")
            closing = ">" if kind == "<" else "%"
            return f"{{{{{kind} {match.group('inner').strip()} {closing}}}}}"
        if match.group("hargs") is not None:
            return _highlight(match.group("hargs"), match.group("code"), doc, line, plan)
        name, args = match.group("name"), _params(match.group("args"))
        if name in ("ref", "relref"):
            target = args.get("0") or args.get("path") or ""
            path, _, anchor = target.partition("#")
            key = re.sub(r"/(_?index)(\.md)?$", "", path.strip("/")).lower()
            found = resolve("ref", key) or resolve("ref", key.rsplit("/", 1)[-1])
            if found is not None:
                plan.converted[name] += 1
                return found + (f"#{anchor}" if anchor else "")
            plan.notes.append(Note(doc.source, line, f"{name} to {target!r}: no such page "
                                   "in the import; left as it was"))
            return match.group(0)
        if name == "figure":
            return _figure(args, doc, line, plan)
        if not name.startswith("/"):
            plan.notes.append(Note(doc.source, line, f"shortcode {name!r} not converted: "
                                   "left as it was"))
        return match.group(0)

    return SHORTCODE.sub(one, body)


def _params(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for number, (key, value) in enumerate(PARAM.findall(text)):
        found[key or str(number)] = value[1:-1] if value[:1] in "\"`" else value
    return found


def _options(text: str, doc: Document, line: int, plan: Plan) -> tuple[str, bool]:
    """Hugo's highlighting options → (marked lines, numbered); others are noted."""
    marked, numbered = "", False
    for option in re.split(r"[,\s]+(?=\w+=)", text.strip().strip('"')):
        key, _, value = option.partition("=")
        key, value = key.strip(), value.strip().strip('"')
        if not key:
            continue
        if key == "hl_lines":
            marked = line_ranges(value)
        elif key == "linenos":
            numbered = value not in ("false", "")
        else:
            plan.notes.append(Note(doc.source, line, f"highlighting option {key!r} has no "
                                   "equal in Chronicle: dropped"))
    return marked, numbered


def _highlight(args: str, code: str, doc: Document, line: int, plan: Plan) -> str:
    language, _, options = args.strip().partition(" ")
    marked, numbered = _options(options, doc, line, plan)
    plan.converted["highlight"] += 1
    return code_fence(language.strip('"'), code, marked, numbered)


def _fence_attributes(match: re.Match[str], doc: Document, plan: Plan) -> str:
    line = line_at(doc.body, match.start(), doc.body_line)
    marked, numbered = _options(match.group("attrs"), doc, line, plan)
    plan.converted["code fence options"] += 1
    info = " ".join([match.group("lang") or "text", *(["linenos"] if numbered else []),
                     *([f"hl_lines={marked}"] if marked else [])])
    return f"{match.group('indent')}{match.group('fence')}{info}"


def _figure(args: dict[str, str], doc: Document, line: int, plan: Plan) -> str:
    src = args.get("src", "")
    caption = args.get("caption") or args.get("title") or ""
    alt = args.get("alt") or caption
    title = f' "{args["title"]}"' if args.get("title") else ""
    image = f"![{alt}]({src}{title})"
    if args.get("link"):
        image = f"[{image}]({args['link']})"
    dropped = sorted(set(args) - {"src", "caption", "title", "alt", "link"})
    if dropped:
        plan.notes.append(Note(doc.source, line, f"figure: {', '.join(dropped)} dropped"))
    plan.converted["figure"] += 1
    return f"{image}\n\n*{caption}*" if caption else image
