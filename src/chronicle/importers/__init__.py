"""Moving a blog from Hugo or Jekyll: its posts, pages and files, and every old URL.

An importer (:mod:`.hugo`, :mod:`.jekyll`) reads the old site into an ``OldSite``
(plain data: documents with their front matter already mapped, the old URLs each
answered at, the static files), and the shared steps in :mod:`.common` turn that into
a ``Plan`` — the files to write and what needs a look — in two passes, as the build
does: first every document gets its Chronicle slug and URL, then bodies are converted,
so a reference from one post to another resolves whatever order they are read in.
Only ``carry_out`` writes; :mod:`.command` is the command line's part.

Old URLs become ``aliases`` (redirect pages), or with ``keep_urls`` the post's own
``url``. Keys Chronicle does not know go under ``imported:`` rather than being dropped.
"""
