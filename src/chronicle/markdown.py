"""Markdown → HTML with markdown-it-py: the one parser every post and page goes through.

Syntax on top of CommonMark: tables, strikethrough, footnotes, task lists, definition
lists, smart quotes and typographic replacements, stable heading ids (h2–h4) and a
table of contents.

Code fences are highlighted by Pygments with CSS classes (``.highlight``). The info
string is the language, then options, written our way or as Hugo and MkDocs users
already write them (:func:`code_options`)::

    ```python linenos hl_lines=2,4-6
    ```go {linenos=table, hl_lines=[2, "4-6"], linenostart=10}
    ```py hl_lines="2 4-6" linenums="10" title="boot.py"

``linenos`` numbers the lines (``inline`` puts the numbers in the code); ``hl_lines``
marks lines of the block (1-based, counted from the block's first line whatever number
it shows); ``linenostart``/``linenums`` choose the first number; ``title`` names the
block above it. Options of theirs that change only their own output are ignored with a
warning; an option nobody knows is an error. An unknown language is shown as plain text
and reported as a warning, never an error.

Embed fences (``chart``, ``table``, ``compare``) are not code: the
:mod:`chronicle.embed_fences` plugin turns them into ``embed`` tokens and the body holds a
placeholder for each; their specs are :attr:`Rendered.embeds`, and the build resolves
them against the results store (:mod:`chronicle.figures`). A bad embed, like a bad code
fence, is a :class:`BuildError` at its line (the file's, front matter included); every
one in a document is collected and raised together as :class:`BuildErrors`.

Nesting (quotes in lists in quotes...) is rendered up to :data:`MAX_NESTING` levels;
markdown-it leaves out whatever lies deeper, and each place it does so is a warning
naming the file and line.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.deflist import deflist_plugin
from mdit_py_plugins.footnote import footnote_plugin
from mdit_py_plugins.tasklists import tasklists_plugin
from pygments import format as format_tokens
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

from chronicle.content import slugify
from chronicle.embed_fences import EmbedSpec, embed_plugin
from chronicle.errors import BuildError, BuildErrors

TOC_MIN_HEADINGS = 3
WORDS_PER_MINUTE = 220
LIGHT_STYLE, DARK_STYLE = "default", "github-dark"
# Block levels markdown-it parses before it drops the rest of a container. The
# CommonMark preset's 20 cut a list at its tenth level (each level is a list and an
# item); 100 is markdown-it's own default, and the parser recurses a few frames a level,
# far inside Python's recursion limit.
MAX_NESTING = 100


@dataclass(frozen=True)
class Heading:
    level: int
    id: str
    text: str


@dataclass(frozen=True)
class Rendered:
    html: str
    headings: tuple[Heading, ...]
    words: int
    warnings: tuple[str, ...] = ()
    text: str = ""  # the readable text (see _reading)
    terms: frozenset[str] = frozenset()  # its distinct words, case-folded (for search)
    embeds: Sequence[EmbedSpec] = ()  # the figures its placeholders stand for, in order

    @property
    def reading_minutes(self) -> int:
        return max(1, -(-self.words // WORDS_PER_MINUTE))

    def wants_toc(self, toc: bool | None) -> bool:
        """Front matter ``toc`` wins; otherwise a post with enough sections gets one."""
        return toc if toc is not None else len(self.headings) >= TOC_MIN_HEADINGS


@dataclass
class _Env:
    path: Path
    line_offset: int
    errors: list[BuildError] = field(default_factory=list)
    embeds: list[EmbedSpec] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def make_parser() -> MarkdownIt:
    # Two options rules look up on every paragraph, set to markdown-it's own defaults:
    # missing, each lookup raised and caught a KeyError (~40 a post, 2.5 % of parsing).
    md = MarkdownIt("commonmark", {"typographer": True, "strikethrough_single_tilde": False,
                                   "tasklists": False, "maxNesting": MAX_NESTING})
    md.enable(["table", "strikethrough", "replacements", "smartquotes"])
    md.use(footnote_plugin).use(tasklists_plugin).use(deflist_plugin)
    md.use(anchors_plugin, min_level=2, max_level=4, slug_func=lambda s: slugify(s) or "section")
    md.use(embed_plugin)
    md.add_render_rule("fence", _render_fence)
    _warn_past_the_nesting_limit(md)
    return md


def _warn_past_the_nesting_limit(md: MarkdownIt) -> None:
    """Report content the block parser leaves out for being nested too deep.

    The parser checks the depth inside its ``tokenize`` loop and silently skips to the
    end of the container; no rule sees it. So ``tokenize`` is wrapped: a call that
    starts at the limit with a line of the container still to parse drops that line
    and everything after it in the container."""
    tokenize = md.block.tokenize

    def tokenize_or_warn(state: Any, start: int, end: int, *args: Any) -> None:
        if state.level >= md.options["maxNesting"]:
            line = state.skipEmptyLines(start)
            env = state.env.get("chronicle")
            if line < end and state.sCount[line] >= state.blkIndent and env is not None:
                env.warnings.append(
                    f"{env.path}:{line + 1 + env.line_offset}: content nested more than "
                    f"{md.options['maxNesting']} levels deep is left out")
        tokenize(state, start, end, *args)

    md.block.tokenize = tokenize_or_warn  # type: ignore[method-assign]


def render_markdown(text: str, path: Path, first_line: int = 1) -> Rendered:
    """Render ``text``, whose first line is line ``first_line`` of ``path``."""
    env = _Env(path=path, line_offset=first_line - 1)
    parser = _parser()
    md_env: dict[str, Any] = {"chronicle": env}  # footnotes keep state here between passes
    tokens = parser.parse(text, md_env)
    html = parser.renderer.render(tokens, parser.options, md_env)
    if env.errors:
        raise env.errors[0] if len(env.errors) == 1 else BuildErrors(env.errors)
    text, terms, words = _reading(tokens)
    return Rendered(html=html, headings=_headings(tokens), words=words,
                    warnings=tuple(env.warnings), text=text, terms=terms,
                    embeds=tuple(env.embeds))


@functools.cache
def _parser() -> MarkdownIt:
    return make_parser()


@functools.cache
def pygments_css() -> str:
    """Light and dark highlighting, each behind its ``prefers-color-scheme`` query so no
    rule of one leaks into the other."""
    light = HtmlFormatter(style=LIGHT_STYLE).get_style_defs(".highlight")
    dark = HtmlFormatter(style=DARK_STYLE).get_style_defs(".highlight")
    return (f"@media not (prefers-color-scheme: dark) {{\n{light}\n}}\n"
            f"@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n")


def _render_fence(renderer: Any, tokens: list[Token], idx: int, options: Any,
                  env: dict[str, Any]) -> str:
    token = tokens[idx]
    state: _Env = env["chronicle"]
    line = (token.map[0] + 1 if token.map else 1) + state.line_offset
    try:
        return _highlight(token.content, token.info, line, state)
    except BuildError as exc:
        state.errors.append(exc)
        return ""


@dataclass(frozen=True)
class CodeOptions:
    """What a code fence's info string asks of its block, besides the language."""

    linenos: str | bool = False  # False, "table" or "inline"
    linenostart: int = 1
    hl_lines: tuple[int, ...] = ()
    title: str = ""
    ignored: tuple[str, ...] = ()  # other tools' options with no meaning here


# Options Hugo and MkDocs take that only restyle their own output: a post brought over
# from them keeps them, and the block still renders as meant.
FOREIGN_OPTIONS = frozenset({"anchorlinenos", "lineanchors", "hl_inline", "style",
                             "noclasses", "guesssyntax", "tabwidth", "linenumbersintable",
                             "codefences", "linespans", "anchor_linenums", "use_pygments"})
_BRACED = re.compile(r"\{([^}]*)\}")
# key, or key=value with the value quoted, a [list], or bare up to a space (a comma too
# inside braces)
_OPTION = r"""([A-Za-z_][\w-]*)(?:\s*=\s*("[^"]*"|'[^']*'|\[[^\]]*\]|%s))?"""
_OPTION_PLAIN = re.compile(_OPTION % r"\S+")
_OPTION_IN_BRACES = re.compile(_OPTION % r"[^\s,]+")


def code_options(info: str, path: Path, line: int) -> tuple[str, CodeOptions]:
    """The language and :class:`CodeOptions` of a fence's info string.

    Outside braces options are separated by spaces (``hl_lines=2,4-6`` is one option);
    inside a Hugo-style ``{…}`` by commas or spaces. A bad value is an error naming the
    option; so is an option no tool knows."""
    info = info.strip()
    language = re.match(r"[^\s{]*", info).group()  # type: ignore[union-attr]
    rest = info[len(language):]
    found: list[tuple[str, str | None]] = []
    for part, braced in _split_braces(rest):
        pattern = _OPTION_IN_BRACES if braced else _OPTION_PLAIN
        position = 0
        while True:
            while position < len(part) and (part[position].isspace()
                                            or (braced and part[position] == ",")):
                position += 1
            if position == len(part):
                break
            match = pattern.match(part, position)
            if not match:
                raise BuildError(f"cannot read code fence options {rest.strip()!r} (e.g. "
                                 "linenos hl_lines=2,4-6)", path, line)
            value = match.group(2)
            found.append((match.group(1), _unquote(value) if value is not None else None))
            position = match.end()
    options: dict[str, Any] = {}
    ignored: list[str] = []
    for key, value in found:
        name = key.lower()
        if name == "linenos":
            mode = "table" if value is None else value.lower()
            if mode not in ("table", "inline", "true", "false"):
                raise BuildError(f"linenos={value!r}: want table, inline, true or false",
                                 path, line)
            options["linenos"] = {"true": "table", "false": False}.get(mode, mode)
        elif name == "hl_lines":
            options["hl_lines"] = tuple(_line_numbers(value or "", path, line))
        elif name in ("linenostart", "linenums"):
            first = (value or "").split()
            if not first or not first[0].isdigit():
                raise BuildError(f"{key}={value!r}: want the first line's number", path, line)
            options["linenostart"] = int(first[0])
            if name == "linenums":  # MkDocs: giving the start turns numbering on
                options.setdefault("linenos", "table")
        elif name == "title":
            options["title"] = value or ""
        elif name in FOREIGN_OPTIONS:
            ignored.append(key)
        else:
            raise BuildError(f"unknown code fence option {key!r} (known: linenos, "
                             "hl_lines=2,4-6, linenostart, linenums, title)", path, line)
    return language, CodeOptions(**options, ignored=tuple(ignored))


def _split_braces(text: str) -> list[tuple[str, bool]]:
    parts, start = [], 0
    for match in _BRACED.finditer(text):
        parts += [(text[start:match.start()], False), (match.group(1), True)]
        start = match.end()
    return [*parts, (text[start:], False)]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _highlight(code: str, info: str, line: int, state: _Env) -> str:
    language, options = code_options(info, state.path, line)
    if options.ignored:
        state.warnings.append(f"{state.path}:{line}: code fence options ignored (they "
                              f"style Hugo's or MkDocs' own output): "
                              f"{', '.join(options.ignored)}")
    try:
        lexer = _lexer(language)
    except ClassNotFound:
        state.warnings.append(f"{state.path}:{line}: unknown code language {language!r}, "
                              "shown as plain text")
        lexer = _lexer("")
    # what pygments.highlight does, with the tokens made first: its formatter's chain of
    # generators then no longer resumes the lexer's at every token (the same HTML,
    # ~6 % less time on the corpus's blocks)
    formatter = _formatter(options.hl_lines, options.linenos, options.linenostart)
    html = format_tokens(list(lexer.get_tokens(code)), formatter)
    label = f' data-lang="{escape(language)}"' if language else ""
    title = f'<div class="code-title">{escape(options.title)}</div>' if options.title else ""
    return f"<div class=\"codeblock\"{label}>{title}{html}</div>\n"


# Lexers and formatters keep only their options, so one of each per option set serves
# every block of a build (making them is a tenth of the cost of highlighting a block).
@functools.lru_cache(maxsize=256)
def _lexer(language: str) -> Any:
    return get_lexer_by_name(language) if language else TextLexer()


@functools.lru_cache(maxsize=256)
def _formatter(hl_lines: tuple[int, ...], linenos: str | bool, linenostart: int
               ) -> HtmlFormatter:
    return HtmlFormatter(cssclass="highlight", wrapcode=True, hl_lines=list(hl_lines),
                         linenos=linenos, linenostart=linenostart)


def _line_numbers(spec: str, path: Path, line: int) -> list[int]:
    """``2,4-6`` (ours), ``2 4-6`` (MkDocs) or ``[2, "4-6"]`` (Hugo) → [2, 4, 5, 6]."""
    numbers: list[int] = []
    for part in re.split(r"[\s,]+", spec.strip().strip("[]")):
        part = part.strip("\"'")
        if not part:
            continue
        found = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not found:
            raise BuildError(f"bad hl_lines {spec!r} (want e.g. hl_lines=2,4-6)", path, line)
        first, last = int(found.group(1)), int(found.group(2) or found.group(1))
        numbers.extend(range(first, last + 1))
    return numbers


def _headings(tokens: list[Token]) -> tuple[Heading, ...]:
    found = []
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.attrGet("id"):
            inline = tokens[index + 1]
            text = "".join(c.content for c in inline.children or []
                           if c.type in ("text", "code_inline"))
            found.append(Heading(level=int(token.tag[1]), id=str(token.attrGet("id")),
                                 text=text.strip()))
    return tuple(found)


_INLINE_TEXT = frozenset({"text", "code_inline", "text_special"})
_INLINE_BREAK = frozenset({"softbreak", "hardbreak"})


def _reading(tokens: list[Token]) -> tuple[str, frozenset[str], int]:
    """What a reader reads, from the tokens in one pass: the text, its distinct words
    case-folded, and how many words it has (a code block's counting half: code is
    skimmed, not read).

    The text is what :func:`chronicle.search.html_text` takes from the rendered HTML,
    without parsing it (prose, headings, table cells, code; not raw HTML, image
    attributes or footnote marks), at a tenth of the cost; its whitespace is left as
    the parts had it. The words are split once, case-folded, for both the count and the
    search index (a post's text is ~900 words, and splitting it is most of the cost)."""
    parts: list[str] = []
    code = embedded = 0
    for token in tokens:
        kind = token.type
        if kind == "inline":
            for child in token.children or ():
                if child.type in _INLINE_TEXT:
                    parts.append(child.content)
                elif child.type in _INLINE_BREAK:
                    parts.append(" ")
            parts.append(" ")
        elif kind == "fence" or kind == "code_block":
            code += len(token.content.split())
            parts += (" ", token.content, " ")
        elif kind == "embed":
            # counted like code (a figure is looked at, not read), but not text: the
            # fence's YAML is nothing a reader sees or searches for
            embedded += len(token.content.split())
    text = "".join(parts)
    words = text.casefold().split()  # case-folding never makes or removes a space
    return text, frozenset(words), len(words) - code + (code + embedded) // 2
