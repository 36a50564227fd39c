"""The extra pages every real build makes: the /lab/ pages and the search index.

``chronicle build``, ``serve``, ``check`` and ``publish`` all build through
:func:`standard_hooks`, so what they show is the same site.
"""

from __future__ import annotations

from dataclasses import replace

from chronicle.build import BuildOptions, Generator
from chronicle.paths import SitePaths


def standard_hooks(options: BuildOptions) -> BuildOptions:
    """Add the /lab/ pages and the search index.

    Each generator imports its module only when the build runs it (the lab pages bring
    in numpy, and matplotlib once a chart must be drawn), and declares what it reads so
    a build with nothing new skips it.
    """
    extra = (*options.extra_pages,
             Generator("lab", _lab_pages, inputs=(SitePaths(options.root).experiments,),
                       reads_site=False),
             Generator("search", _search_files, reads_site=True))
    return replace(options, extra_pages=extra)


def _lab_pages(site, renderer):  # noqa: ANN001, ANN202
    from chronicle.labpages import lab_files

    # the build's view of the results: one discovery of the experiments and one set of
    # bootstrap summaries per build, shared with the posts' figures
    return list(lab_files(renderer.lab(), renderer.charts, renderer))


def _search_files(site, renderer):  # noqa: ANN001, ANN202
    from chronicle.search import search_files

    return search_files(site, renderer)
