from datetime import UTC, datetime
from pathlib import Path

from chronicle.config import SiteConfig
from chronicle.content import Post
from chronicle.model import Entry, build_site

CONFIG = SiteConfig(title="Chronicle", description="", base_url="https://x.org/", author="",
                    posts_per_page=2)
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def entry(slug: str, month: int, day: int, tags=(), updated=None, embeds_updated=None) -> Entry:
    post = Post(source=Path(f"posts/{slug}.md"), title=slug.title(),
                date=datetime(2025, month, day, tzinfo=UTC), slug=slug, body="", body_line=4,
                tags=tuple(tags), updated=updated)
    return Entry(post=post, html="<p>x</p>", embeds_updated=embeds_updated)


def three_posts():
    return [entry("b", 3, 5, tags=["boot", "Nix"]), entry("a", 3, 1, tags=["boot"]),
            entry("c", 4, 2, tags=["nix"])]


def test_posts_are_newest_first():
    site = build_site(CONFIG, three_posts(), [], NOW)
    assert [e.post.slug for e in site.entries] == ["c", "b", "a"]


def test_previous_and_next_are_older_and_newer_neighbours():
    site = build_site(CONFIG, three_posts(), [], NOW)
    middle = site.entries[1]
    assert site.older(middle).post.slug == "a" and site.newer(middle).post.slug == "c"
    assert site.newer(site.entries[0]) is None and site.older(site.entries[-1]) is None


def test_tags_differing_only_in_case_are_one_tag():
    site = build_site(CONFIG, three_posts(), [], NOW)
    assert [(t.name, t.slug, len(t.entries)) for t in site.tags] == [("boot", "boot", 2),
                                                                       ("Nix", "nix", 2)]
    assert site.tag("NIX").url == "tags/nix/"


def test_pagination_links_pages_both_ways():
    pages = build_site(CONFIG, three_posts(), [], NOW).index_pages
    assert [p.url for p in pages] == ["", "page/2/"]
    assert pages[0].older_url == "page/2/" and pages[0].newer_url is None
    assert pages[1].newer_url == "" and pages[1].older_url is None
    assert [len(p.entries) for p in pages] == [2, 1]


def test_empty_site_has_one_empty_index_page_and_feed_dated_now():
    site = build_site(CONFIG, [], [], NOW)
    assert len(site.index_pages) == 1 and site.index_pages[0].entries == ()
    assert site.feeds[0].updated == NOW


def test_archive_groups_by_year_newest_first():
    posts = [*three_posts(), entry("old", 1, 1)]
    posts[-1] = Entry(post=Post(source=Path("p.md"), title="Old",
                                date=datetime(2023, 1, 1, tzinfo=UTC), slug="old", body="",
                                body_line=1), html="")
    assert [y.year for y in build_site(CONFIG, posts, [], NOW).years] == [2025, 2023]


def test_feeds_for_site_and_each_tag_dated_by_content():
    site = build_site(CONFIG, three_posts(), [], NOW)
    assert [f.url for f in site.feeds] == ["atom.xml", "tags/boot/atom.xml", "tags/nix/atom.xml"]
    assert site.feeds[0].updated == datetime(2025, 4, 2, tzinfo=UTC)
    assert site.feeds[1].updated == datetime(2025, 3, 5, tzinfo=UTC)


def test_newer_embedded_data_moves_a_posts_updated_date():
    later = datetime(2025, 5, 1, tzinfo=UTC)
    assert entry("a", 3, 1, embeds_updated=later).updated == later
    assert entry("a", 3, 1, embeds_updated=datetime(2024, 1, 1, tzinfo=UTC)).updated == \
        datetime(2025, 3, 1, tzinfo=UTC)


def test_sitemap_lists_every_page_sorted_with_post_dates():
    site = build_site(CONFIG, three_posts(), [], NOW)
    rows = site.sitemap(("lab/",))
    urls = [r.url for r in rows]
    assert urls == sorted(urls)
    assert {"", "page/2/", "tags/", "archive/", "tags/boot/", "lab/", "2025/03/a/"} <= set(urls)
    assert dict((r.url, r.lastmod) for r in rows)["2025/03/a/"] == datetime(2025, 3, 1,
                                                                            tzinfo=UTC)


def test_context_digests_with_a_shared_memo_equal_fresh_ones():
    from chronicle.manifest import SITE_PARTS, value_digest
    from chronicle.render import page_jobs

    site = build_site(CONFIG, three_posts(), [], NOW)
    memo: dict = {}
    for job in page_jobs(site):
        assert value_digest(job.context, memo) == value_digest(job.context), job.name
    for part in SITE_PARTS:
        assert value_digest(getattr(site, part), memo) == value_digest(getattr(site, part))


def test_a_tag_digest_changes_with_its_entries():
    from chronicle.manifest import value_digest

    before = build_site(CONFIG, three_posts(), [], NOW)
    after = build_site(CONFIG, [*three_posts()[:2], entry("c", 4, 3, tags=["nix"])], [], NOW)
    memo: dict = {}
    assert value_digest(before.tag("nix"), memo) != value_digest(after.tag("nix"), memo)


def _changed(value):
    """Another value of the same type as a field's ``value`` (for the digest tests)."""
    from dataclasses import replace

    from chronicle.markdown import Heading
    from chronicle.model import Body

    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "!"
    if isinstance(value, Path):
        return value.with_name("other.md")
    if isinstance(value, datetime):
        return value.replace(year=value.year + 1)
    if isinstance(value, Body):
        return Body.of("<p>other</p>")
    if isinstance(value, tuple):
        return (*value, "more") if all(isinstance(v, str) for v in value) else (
            *value, Heading(2, "more", "More"))
    if value is None:
        return True
    return replace(value, title=value.title + "!")  # the post or page inside an entry


def test_every_field_of_an_entry_and_its_post_reaches_the_entry_digest():
    """A field added to Post or Entry later cannot leave a page stale: no list to forget."""
    from dataclasses import fields, replace

    from chronicle.content import Page
    from chronicle.model import PageEntry

    base = entry("a", 3, 1, tags=["boot"])
    page = PageEntry(page=Page(source=Path("site/pages/about.md"), title="About", slug="about",
                               body="", body_line=4), html="<p>x</p>")
    for top in (base, page):
        inner = top.post if top is base else top.page
        for f in fields(inner):
            if f.metadata.get("digest", True):
                other = replace(inner, **{f.name: _changed(getattr(inner, f.name))})
                changed = replace(top, **{"post" if top is base else "page": other})
                assert changed.digest != top.digest, f.name
        for f in fields(top):
            if f.metadata.get("digest", True):  # figures: their pages record the results
                changed = replace(top, **{f.name: _changed(getattr(top, f.name))})
                assert changed.digest != top.digest, f.name


def test_a_post_s_markdown_source_is_left_to_its_rendered_body():
    from dataclasses import replace

    base = entry("a", 3, 1)
    assert replace(base, post=replace(base.post, body="# other")).digest == base.digest
