"""The hooks every real build plugs in: embeds, the /lab/ pages and the search index.

``chronicle build``, ``serve``, ``check`` and ``publish`` all build through
:func:`standard_hooks`, so what they show is the same site.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from chronicle.build import BuildOptions, Generator
from chronicle.paths import SitePaths


def standard_hooks(options: BuildOptions) -> BuildOptions:
    """Plug in the embeds, the /lab/ pages and the search index.

    Each hook imports its module only when the build first calls it (embeds and lab
    pages bring in numpy, and matplotlib once a chart must be drawn), and the page
    generators declare what they read so a build with nothing new skips them.
    """
    embeds = _LazyEmbeds(options)
    if options.embed_factory is None:
        options = replace(options, embed_factory=embeds)
    extra = (*options.extra_pages,
             Generator("lab", _LazyLabPages(embeds),
                       inputs=(SitePaths(options.root).experiments,), reads_site=False),
             Generator("search", _search_files, reads_site=True))
    return replace(options, extra_pages=extra)


class _LazyEmbeds:
    """``chronicle.embeds.make_factory(options)``, made on the first post with an embed."""

    def __init__(self, options):  # noqa: ANN001
        self.options = options
        self.embedder = None

    def __call__(self, source: Path):  # noqa: ANN204
        return self.made()(source)

    def made(self):  # noqa: ANN201
        if self.embedder is None:
            from chronicle.embeds import make_factory

            self.embedder = make_factory(self.options)
        return self.embedder

    @property
    def stale_results(self) -> list:
        return self.embedder.stale_results if self.embedder is not None else []


class _LazyLabPages:
    """The /lab/ pages, drawn with the posts' Embedder: one discovery of the experiments
    and one set of bootstrap summaries per build, not one per generator."""

    def __init__(self, embeds: _LazyEmbeds):
        self.embeds = embeds

    def __call__(self, site, renderer):  # noqa: ANN001, ANN204
        from chronicle.labpages import lab_files

        return list(lab_files(self.embeds.made(), renderer))


def _search_files(site, renderer):  # noqa: ANN001, ANN202
    from chronicle.search import search_files

    return search_files(site, renderer)
