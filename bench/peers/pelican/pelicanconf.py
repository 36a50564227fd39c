"""Pelican's side of the benchmark: a minimal theme of our own (theme/, the same pages as
the Hugo layouts), Pygments highlighting via codehilite, the same URL shape as Chronicle,
paginated index and tag pages, an archive and one Atom feed. Category and author pages
are off: every post would land in one category and one author, tripling the index."""

AUTHOR = "Bench"
SITENAME = "Bench"
SITEURL = "https://bench.example.org"
TIMEZONE = "UTC"
DEFAULT_LANG = "en"
DEFAULT_PAGINATION = 10
PATH = "content"
THEME = "theme"
DIRECT_TEMPLATES = ["index", "tags", "archives"]
PAGINATED_TEMPLATES = {"index": None, "tag": None}

ARTICLE_URL = "{date:%Y}/{date:%m}/{slug}/"
ARTICLE_SAVE_AS = "{date:%Y}/{date:%m}/{slug}/index.html"
CATEGORY_SAVE_AS = ""
CATEGORIES_SAVE_AS = ""
AUTHOR_SAVE_AS = ""
AUTHORS_SAVE_AS = ""

FEED_ALL_ATOM = "feeds/all.atom.xml"
FEED_MAX_ITEMS = 20  # the newest 20 posts, as in Chronicle's feed
CATEGORY_FEED_ATOM = None
TRANSLATION_FEED_ATOM = None
AUTHOR_FEED_ATOM = None
AUTHOR_FEED_RSS = None

MARKDOWN = {
    "extension_configs": {
        "markdown.extensions.codehilite": {"css_class": "highlight"},
        "markdown.extensions.extra": {},
        "markdown.extensions.meta": {},
        "markdown.extensions.toc": {},
    },
    "output_format": "html5",
}

# Pelican's own answer to rebuild speed: reuse parsed content between runs.
CACHE_CONTENT = True
LOAD_CONTENT_CACHE = True
CACHE_PATH = "cache"
DELETE_OUTPUT_DIRECTORY = False
