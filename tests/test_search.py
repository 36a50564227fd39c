import json
from datetime import UTC, datetime
from pathlib import Path

from chronicle.config import SiteConfig
from chronicle.content import Page, Post
from chronicle.model import Entry, PageEntry, build_site
from chronicle.render import BUNDLED_THEMES
from chronicle.search import INDEX_PATH, html_text, index_words, search_files, search_index

CONFIG = SiteConfig(title="Lab notes", description="", base_url="https://example.org/blog/",
                    author="")


def entry(slug: str, day: int, html: str, tags=(), summary="", title=None) -> Entry:
    post = Post(source=Path(f"posts/{slug}.md"), title=title or slug.replace("-", " ").title(),
                date=datetime(2025, 3, day, tzinfo=UTC), slug=slug, body="", body_line=4,
                tags=tuple(tags), summary=summary)
    return Entry(post=post, html=html)


def site(*entries: Entry, pages=()):
    return build_site(CONFIG, list(entries), list(pages), datetime(2025, 4, 1, tzinfo=UTC))


def records(data: bytes) -> list[dict]:
    return json.loads(data)["entries"]


def test_index_lists_posts_newest_first_with_their_metadata():
    data = search_index(site(
        entry("older", 1, "<p>Old words</p>", tags=["boot"]),
        entry("newer", 9, "<p>New words</p>", summary="The newest one", tags=["incus", "Nix"]),
    ))
    first, second = records(data)
    assert first == {
        "kind": "post", "title": "Newer", "url": "2025/03/newer/", "date": "2025-03-09",
        "tags": ["incus", "Nix"], "summary": "The newest one", "excerpt": "New words",
        "words": ["incus", "new", "newer", "newest", "nix", "words"],
    }
    assert second["url"] == "2025/03/older/"


def test_pages_follow_posts():
    page = PageEntry(page=Page(source=Path("site/pages/about.md"), title="About", slug="about",
                               body="", body_line=4), html="<p>Who writes this</p>")
    kinds = [r["kind"] for r in records(search_index(site(entry("a", 1, "<p>x</p>"),
                                                          pages=[page])))]
    assert kinds == ["post", "page"]


def test_same_model_gives_same_bytes():
    make = lambda: search_index(site(entry("a", 1, "<p>qemu boots</p>"),  # noqa: E731
                                     entry("b", 2, "<p>incus starts</p>")))
    assert make() == make()


def test_excerpt_is_cut_to_thirty_words():
    body = "<p>" + " ".join(f"word{i}" for i in range(100)) + "</p>"
    (record,) = records(search_index(site(entry("long", 1, body))))
    assert record["excerpt"].split()[:30] == [f"word{i}" for i in range(30)]
    assert record["excerpt"].endswith("…")


def test_scripts_styles_and_chart_drawings_are_not_indexed():
    html = ('<p>Prose here</p><script>var secret = 1</script><style>.x{}</style>'
            '<figure><svg><title>chart title</title><text>axislabel</text></svg>'
            '<figcaption>Boot time</figcaption></figure>')
    assert html_text(html) == "Prose here Boot time"


def test_inline_markup_does_not_split_words():
    assert html_text("<p>micro<em>VM</em>s</p><p>next</p>") == "microVMs next"


def test_words_drop_numbers_and_stop_words_and_keep_hyphenated_parts():
    assert index_words(["The cloud-hypervisor took 412 ms and 1.5 s"]) == [
        "cloud", "cloud-hypervisor", "hypervisor", "ms", "took"]


def test_build_generator_writes_search_json_at_the_site_root():
    ((name, data),) = search_files(site(entry("a", 1, "<p>x</p>")))
    assert name == INDEX_PATH == "search.json"
    assert json.loads(data)["version"] == 1


def test_client_script_ships_with_the_theme():
    script = BUNDLED_THEMES / "chronicle" / "static" / "search.js"
    text = script.read_text()
    assert "search.json" in text and "textContent" in text and "innerHTML" not in text


def test_index_from_cached_records_equals_index_made_afresh(tmp_path):
    from chronicle.cache import Cache

    made = site(entry("a", 1, "<p>qemu boots</p>", tags=["boot"]),
                entry("b", 2, "<p>incus starts</p>", summary="Fast"))
    first = Cache(tmp_path / "cache")
    assert search_index(made, first) == search_index(made)
    first.flush()
    first.close()
    second = Cache(tmp_path / "cache")
    assert search_index(made, second) == search_index(made)


def test_regex_text_scan_skips_raw_script_text_and_comments():
    html = ('<p>before</p><script>if (a < b) { x = "</p>" }</script><!-- a > b -->'
            '<img alt="x > y" src="i.png">after &amp; more')
    assert html_text(html) == "before after & more"


def test_text_without_comments_or_scripts_equals_the_full_scan():
    # the substitution fast path and the tag-by-tag scan (forced by a comment) agree
    fragment = ('<H2 id="a">Boot <em>time</em></H2><p>One<br/>two &amp; <a href="x" '
                'title="a > b">three</a></p><div class="highlight"><pre><span class="k">'
                'def</span> f():</pre></div><table><tr><td>a</td><td>b</td></tr></table>'
                '<pre2>x</pre2>y<hr>z')
    assert html_text(fragment) == html_text(fragment + "<!-- c -->")
    assert html_text(fragment) == "Boot time One two & three def f(): a b xy z"


def test_the_words_taken_from_tokens_are_the_words_of_the_rendered_html():
    # the build indexes a post from its tokens' text (Rendered.terms); the index must hold
    # the same words html_text would find in the HTML, whatever the markdown holds
    from chronicle.markdown import render_markdown
    from chronicle.search import excerpt, term_words

    source = (
        "Intro with *emphasis*, `code_inline`, a [link](https://example.org) and "
        "&amp; an entity.[^1]\nsoft break  \nhard break\n\n"
        "## A “heading” -- with dashes\n\n"
        "| Subject | Boot |\n|---|---:|\n| qemu-microvm | 1.6 s |\n\n"
        "- [x] done item\n- [ ] open item\n\n"
        "Term\n: its definition\n\n"
        "> quoted *words*\n\n"
        "```python linenos hl_lines=2\nimport os\nprint(os.getcwd())\n```\n\n"
        "    indented code block\n\n"
        "![alt words](x.png) ~~struck~~ don't cloud-hypervisor\n\n"
        "[^1]: The footnote's own text.\n")
    rendered = render_markdown(source, Path("posts/x.md"))
    assert "footnote’s own text" in rendered.text and "getcwd" in rendered.text
    from_html = index_words([html_text(rendered.html)])
    assert index_words([rendered.text]) == from_html
    assert rendered.terms == set(rendered.text.casefold().split())
    assert term_words(rendered.terms) == from_html  # the words the build indexes
    assert excerpt(rendered.text).startswith("Intro with emphasis, code_inline, a link")


def test_fewer_regex_matches_give_the_words_of_the_plain_definition():
    # index_words sends only tokens that are not letters alone through WORD; the words
    # must be those of WORD over the whole text, with the same joiner and stop-word rules
    import re

    from chronicle.search import STOP_WORDS, WORD

    def reference(text: str) -> list[str]:
        words = set()
        for word in set(WORD.findall(text.casefold())) - STOP_WORDS:
            if len(word) < 2 or not any(c.isalpha() for c in word):
                continue
            words.add(word)
            words.update(p for p in re.split(r"[-.']", word)
                         if len(p) > 1 and p not in STOP_WORDS and not p.isdigit())
        return sorted(words)

    text = ("The Straße and STRASSE, naïve café (déjà-vu) at 10.5 GiB; don't stop_words "
            "v2 x86_64 cloud-hypervisor's \"quoted\" e\u0301lan Ὀδυσσεύς 東京 1,024 "
            "-dash- .dot. 'single' a I to -- … microVM/Incus a.b.c 42")
    assert index_words([text]) == reference(text)
    assert index_words(["Boot", "boot BOOT"]) == ["boot"]


def test_the_index_of_a_build_uses_the_records_made_while_parsing(site_root, tmp_path,
                                                                 monkeypatch):
    # the build stores each post's record while it parses the post (from its tokens'
    # text), in forked workers here; the index finds every one of them and makes none,
    # and their words are the words the index would take from the rendered HTML
    from chronicle import parallel
    from chronicle.build import BuildOptions, Generator, build
    from chronicle.search import RECORD_NAMESPACE
    from tests.conftest import post_text, write

    monkeypatch.setenv("CHRONICLE_JOBS", "2")
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 1)
    write(site_root / "posts" / "2025-04-09-rich.md", post_text(
        "Rich", "2025-04-09", tags="[boot]",
        body="Some *emphasis*, `code`, a [link](https://example.org) & more.[^1]\n\n"
             "| a | b |\n|---|---|\n| qemu-microvm | 1.6 s |\n\n"
             "```python\nprint('x')\n```\n\n[^1]: A note.\n"))
    made: list[str] = []

    def indexed(s, renderer):  # noqa: ANN001, ANN202
        put = renderer.cache.put
        monkeypatch.setattr(renderer.cache, "put",
                            lambda ns, *rest: (made.append(ns), put(ns, *rest)))
        return search_files(s, renderer)

    fresh = Generator("fresh", lambda s, r: [("fresh.json", search_index(s, body=r.body))])
    out = tmp_path / "out"
    build(BuildOptions(root=site_root, out=out, extra_pages=(
        Generator("search", indexed), fresh)))
    assert RECORD_NAMESPACE not in made
    stored = records((out / INDEX_PATH).read_bytes())
    afresh = records((out / "fresh.json").read_bytes())
    assert [r["words"] for r in stored] == [r["words"] for r in afresh]
    rich = next(r for r in stored if r["title"] == "Rich")
    assert "qemu-microvm" in rich["words"] and "[1]" not in rich["excerpt"]


def test_a_post_with_embeds_is_indexed_from_what_its_embeds_show(tmp_path):
    # its tokens hold the fence's YAML, not the table the reader sees: its record comes
    # from the HTML with its figures drawn in, as an index made without any cache makes it
    from chronicle.build import BuildOptions, Generator, build
    from chronicle.hooks import standard_hooks
    from tests.support import fresh_experiment, make_site, write_post

    root = make_site(tmp_path / "blog")
    fresh_experiment(root)
    write_post(root, "numbers", "Numbers:\n\n```table boot-to-init\nmetric: boot_ms\n```\n")
    fresh = Generator("fresh", lambda s, r: [("fresh.json", search_index(s, body=r.body))])
    out = tmp_path / "out"
    build(standard_hooks(BuildOptions(root=root, out=out, extra_pages=(fresh,))))
    (stored,) = records((out / INDEX_PATH).read_bytes())
    assert stored == records((out / "fresh.json").read_bytes())[0]
    assert {"qemu-microvm", "median"} <= set(stored["words"])  # not in the fence itself


def _figure_post_index(tmp_path: Path, body: str) -> tuple[Path, Path]:
    """A blog of one post with ``body`` (figures of boot-to-init), built with its index
    and, beside it, the index an uncached build makes from the whole text."""
    from tests.support import fresh_experiment, make_site, write_post

    root = make_site(tmp_path / "blog")
    fresh_experiment(root)
    write_post(root, "numbers", body)
    return root, _build_with_fresh_index(root, tmp_path / "out")


def _build_with_fresh_index(root: Path, out: Path) -> Path:
    from chronicle.build import BuildOptions, Generator, build
    from chronicle.hooks import standard_hooks

    fresh = Generator("fresh", lambda s, r: [("fresh.json", search_index(s, body=r.body))])
    build(standard_hooks(BuildOptions(root=root, out=out, extra_pages=(fresh,))))
    return out


LONG_PROSE = " ".join(f"word{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(45))
FIGURES_AFTER_PROSE = (f"{LONG_PROSE}\n\n```table boot-to-init\nmetric: boot_ms\n```\n\n"
                       "Between the figures.\n\n```chart boot-to-init\nmetric: pss_mib\n```\n")


def test_a_post_whose_figures_follow_its_first_words_is_indexed_as_from_its_text(tmp_path):
    _, out = _figure_post_index(tmp_path, FIGURES_AFTER_PROSE)
    (stored,) = records((out / INDEX_PATH).read_bytes())
    assert stored == records((out / "fresh.json").read_bytes())[0]
    assert stored["excerpt"].startswith("wordaa wordba") and stored["excerpt"].endswith(" …")
    assert {"between", "median", "qemu-microvm", "wordsb"} <= set(stored["words"])


def test_a_new_result_indexes_the_posts_showing_it_without_their_prose_again(tmp_path,
                                                                             monkeypatch):
    from chronicle import search
    from tests.support import fresh_key_parts, make_result, store_result

    root, out = _figure_post_index(tmp_path, FIGURES_AFTER_PROSE)
    store_result(root, make_result(started="2026-11-21T10:00:00.000000Z", shift=5000.0,
                                   key_parts=fresh_key_parts(root)))

    def again(html):  # noqa: ANN001, ANN202
        raise AssertionError("the post's prose was read again")

    monkeypatch.setattr(search, "prose_words", again)
    _build_with_fresh_index(root, out)
    (stored,) = records((out / INDEX_PATH).read_bytes())
    assert "20261121t100000z" in stored["words"]  # the new run's id: indexed again
    assert stored == records((out / "fresh.json").read_bytes())[0]


def test_a_figure_template_showing_its_id_as_text_indexes_each_line_s_own(tmp_path):
    # the words of a figure shown on many lines are found once, unless its id is text
    from tests.support import fresh_experiment, make_site, write_post

    root = make_site(tmp_path / "blog")
    fresh_experiment(root)
    theme = Path(__file__).parent.parent / "themes" / "chronicle" / "templates" / "figures"
    own = (theme / "table.html").read_text().replace("</figure>",
                                                     "<p>see {{ id }}</p></figure>")
    (root / "site" / "templates" / "figures").mkdir(parents=True)
    (root / "site" / "templates" / "figures" / "table.html").write_text(own)
    fence = "```table boot-to-init\nmetric: boot_ms\n```\n"
    write_post(root, "twice", f"{fence}\nAgain:\n\n{fence}")
    out = _build_with_fresh_index(root, tmp_path / "out")
    (stored,) = records((out / INDEX_PATH).read_bytes())
    assert stored == records((out / "fresh.json").read_bytes())[0]
    shown = [w for w in stored["words"] if w.startswith("table-boot-to-init-")]
    assert len(shown) == 2


def test_a_blog_without_figures_is_indexed_again_without_importing_numpy(tmp_path):
    # numpy and the figure modules cost a blog that shows no figure ~0.15 s a build; an
    # edit re-makes the index, and the lab pages (which need them) are left as they were

    from chronicle.build import BuildOptions, build
    from chronicle.hooks import standard_hooks
    from tests.support import make_site, write_post

    root = make_site(tmp_path / "blog")
    write_post(root, "words", "Only prose here.\n")
    build(standard_hooks(BuildOptions(root=root)))
    write_post(root, "words", "Only prose here, edited.\n")
    from tests.support import imported_by_a_build

    assert not imported_by_a_build(root, 'chronicle.search', 'numpy')
