from pathlib import Path

import pytest

from chronicle.embed_fences import fill
from chronicle.errors import BuildError, BuildErrors
from chronicle.markdown import pygments_css, render_markdown

SOURCE = Path("posts/example.md")


def html(text: str, **kwargs) -> str:
    return render_markdown(text, SOURCE, **kwargs).html


def test_tables_are_rendered():
    assert "<table>" in html("| a | b |\n|---|---|\n| 1 | 2 |\n")


def test_strikethrough():
    assert "<s>gone</s>" in html("~~gone~~")
    assert "<s>" not in html("~a single tilde~ is text")


def test_task_lists_get_one_disabled_checkbox_each():
    out = html("- [x] done\n- [ ] open\n")
    assert out.count("<input") == 2 and out.count('checked="checked"') == 1
    assert out.count('disabled="disabled"') == 2


def test_footnotes_link_both_ways():
    out = html("Claim[^1].\n\n[^1]: Source.\n")
    assert 'href="#fn1"' in out and 'href="#fnref1"' in out


def test_task_lists_render_checkboxes():
    out = html("- [x] done\n- [ ] todo\n")
    assert out.count('type="checkbox"') == 2 and 'checked="checked"' in out


def test_definition_lists():
    assert "<dt>Term</dt>" in html("Term\n: Meaning\n")


def test_smart_quotes_and_dashes():
    out = html('"quoted" -- it\'s\n')
    assert "“quoted”" in out and "–" in out and "it’s" in out


def test_heading_ids_are_stable_and_unique():
    rendered = render_markdown("## Boot time\n\n## Boot time\n\n### Memory (PSS)\n", SOURCE)
    assert [h.id for h in rendered.headings] == ["boot-time", "boot-time-1", "memory-pss"]
    assert '<h2 id="boot-time">' in rendered.html


def test_toc_for_three_headings_unless_front_matter_says_no():
    three = render_markdown("## A\n\n## B\n\n## C\n", SOURCE)
    two = render_markdown("## A\n\n## B\n", SOURCE)
    assert three.wants_toc(None) and not two.wants_toc(None)
    assert not three.wants_toc(False) and two.wants_toc(True)


@pytest.mark.parametrize("language", ["nix", "bash", "python", "yaml", "toml", "ruby"])
def test_required_languages_are_highlighted_with_css_classes(language):
    out = html(f"```{language}\nx = 1\n```\n")
    assert '<div class="highlight">' in out and '<span class="' in out


def test_unknown_language_is_plain_text_with_a_warning_not_an_error():
    rendered = render_markdown("```klingon\nqapla'\n```\n", SOURCE)
    assert "qapla" in rendered.html and '<span class="n">' not in rendered.html
    assert len(rendered.warnings) == 1 and "klingon" in rendered.warnings[0]


def test_quotes_and_lists_nested_fifty_deep_are_all_rendered():
    quotes = render_markdown(">" * 50 + " deep quote\n", SOURCE)
    assert "deep quote" in quotes.html and quotes.warnings == ()
    lists = render_markdown("".join(f"{'  ' * i}- item {i}\n" for i in range(30)), SOURCE)
    assert "item 29" in lists.html and lists.warnings == ()


def test_content_nested_past_the_parsers_limit_is_a_warning_with_its_line():
    from chronicle.markdown import MAX_NESTING

    text = "Intro.\n\n" + ">" * (MAX_NESTING + 5) + " lost\n\nAfter.\n"
    rendered = render_markdown(text, SOURCE, first_line=6)
    assert "lost" not in rendered.html and "After." in rendered.html
    assert len(rendered.warnings) == 1
    assert rendered.warnings[0].startswith(f"{SOURCE}:8: ")
    assert f"nested more than {MAX_NESTING} levels deep" in rendered.warnings[0]


def test_line_numbers_and_highlighted_lines():
    out = html("```python linenos hl_lines=2,3-3\na = 1\nb = 2\nc = 3\n```\n")
    assert 'class="linenos"' in out
    assert out.count('class="hll"') == 2


@pytest.mark.parametrize("info", [
    'go {linenos=table, hl_lines=[2, "3-3"]}',  # Hugo
    "go {hl_lines=[2,3],linenos=true}",
    'go hl_lines="2 3" linenums="1"',  # MkDocs
    "go linenos hl_lines=2,3",  # ours
])
def test_code_fence_options_written_the_hugo_or_mkdocs_way_render_as_meant(info):
    rendered = render_markdown(f"```{info}\na := 1\nb := 2\nc := 3\n```\n", SOURCE)
    assert rendered.html.count('class="hll"') == 2 and 'class="linenos"' in rendered.html
    assert 'data-lang="go"' in rendered.html and not rendered.warnings


def test_first_line_number_and_title_come_from_the_fence():
    out = html('```py linenums="41" title="boot.py"\nx = 1\ny = 2\n```\n')
    assert '<div class="code-title">boot.py</div>' in out
    assert ">41<" in out and ">42<" in out


def test_language_may_touch_the_braces_and_inline_numbers_stay_in_the_code():
    out = html("```nix{linenos=inline, hl_lines=[1]}\nx\n```\n")
    assert 'data-lang="nix"' in out and 'class="linenos"' in out
    assert "highlighttable" not in out and out.count('class="hll"') == 1


def test_other_tools_styling_options_are_ignored_with_a_warning():
    rendered = render_markdown("```go {style=monokai, anchorlinenos=true}\nx\n```\n", SOURCE,
                               first_line=4)
    assert '<div class="highlight">' in rendered.html
    assert rendered.warnings == (f"{SOURCE}:4: code fence options ignored (they style Hugo's "
                                 "or MkDocs' own output): style, anchorlinenos",)


@pytest.mark.parametrize("info, problem", [
    ("go {hl_lines=[two]}", "bad hl_lines"),
    ("go linenos=sometimes", "linenos="),
    ("go linenostart=x", "first line's number"),
    ("go {=2}", "cannot read code fence options"),
])
def test_bad_fence_option_values_are_errors_with_the_source_line(info, problem):
    with pytest.raises(BuildError, match=problem) as caught:
        render_markdown(f"Text\n\n```{info}\nx\n```\n", SOURCE, first_line=10)
    assert caught.value.line == 12


def test_unknown_fence_option_is_an_error_with_the_source_line():
    with pytest.raises(BuildError, match="fence option") as caught:
        render_markdown("Text\n\n```python wrap\nx\n```\n", SOURCE, first_line=10)
    assert caught.value.line == 12


def test_embed_fences_become_placeholders_and_specs_with_file_lines():
    rendered = render_markdown("Intro\n\n```chart boot-to-init\nmetric: boot_ms\n```\n\n"
                               "- ```table footprint\n  ```\n", SOURCE, first_line=6)
    chart, table = rendered.embeds
    assert (chart.fence, chart.experiment, chart.metrics, chart.line) == (
        "chart", "boot-to-init", ("boot_ms",), 8)
    assert (table.fence, table.experiment, table.line) == ("table", "footprint", 12)
    assert "<!--chronicle-figure:0-->\n" in rendered.html
    assert "<li>\n<!--chronicle-figure:1-->\n</li>" in rendered.html
    assert "boot_ms" not in rendered.html and "boot_ms" not in rendered.text


def test_a_figure_fills_its_placeholder():
    rendered = render_markdown("A\n\n```table x\n```\n\nB\n", SOURCE)
    assert fill(rendered.html, lambda i: f"<figure>{i}</figure>\n") == (
        "<p>A</p>\n<figure>0</figure>\n<p>B</p>\n")


def test_an_embed_fence_counts_like_code_in_reading_time():
    fence = "```chart x\nmetric: m\n" + "title: t\n" * 600 + "```\n"
    assert render_markdown(fence, SOURCE).words == 601  # 1,202 words, halved


def test_every_bad_embed_in_a_document_is_reported():
    with pytest.raises(BuildErrors) as caught:
        render_markdown("```chart a\n```\n\n```chart\nmetric: m\n```\n", SOURCE)
    assert [e.line for e in caught.value.errors] == [1, 4]
    assert "needs 'metric: NAME'" in caught.value.errors[0].message
    assert "needs an experiment name" in caught.value.errors[1].message


def test_reading_time_is_at_least_a_minute_and_grows_with_words():
    assert render_markdown("short", SOURCE).reading_minutes == 1
    assert render_markdown("word " * 1000, SOURCE).reading_minutes == 5


def test_words_are_counted_in_the_text_a_reader_sees_and_code_counts_half():
    rendered = render_markdown("Two [linked words](https://example.org/a/b) "
                               "![a diagram](d.png)\n\n```\none two three four\n```\n", SOURCE)
    assert rendered.text.split() == "Two linked words one two three four".split()
    assert rendered.words == 3 + 2


def test_pygments_css_has_light_and_dark_schemes():
    css = pygments_css()
    assert "@media not (prefers-color-scheme: dark)" in css
    assert "@media (prefers-color-scheme: dark)" in css
    assert css.count(".highlight") > 20


def test_code_is_highlighted_exactly_as_pygments_highlight_does_it():
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    code = 'def boot(vm, retries=3):\n    """Start it."""\n    return vm.start()  # <ok>\n'
    for options, extra in (("", {}), (" linenos hl_lines=2", {"hl_lines": [2],
                                                             "linenos": "table"})):
        expected = highlight(code, PythonLexer(),
                             HtmlFormatter(cssclass="highlight", wrapcode=True, **extra))
        html = render_markdown(f"```python{options}\n{code}```\n", SOURCE).html
        assert html == f'<div class="codeblock" data-lang="python">{expected}</div>\n'
