"""Clean stage: every format becomes text plus a heading map; chrome and markup go, content stays."""

from __future__ import annotations

import html
import itertools
import re
from pathlib import Path

import pytest
from reportlab.pdfgen import canvas

from askdocs.chunk import Chunker
from askdocs.clean import Document, Section, clean
from askdocs.errors import LoadError
from askdocs.load import discover, read

SHARED = Path(__file__).resolve().parents[2] / "shared"
PG_HTML = SHARED / "corpus" / "postgresql-15-html"


def _clean(path: Path, content: str | bytes) -> Document:
    """Write a real file and run it through discover -> read -> clean."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    found = discover([path])
    assert len(found.files) == 1
    return clean(read(found.files[0]))


def _paths(doc: Document) -> list[str]:
    return [s.path for s in doc.sections]


def _assert_sections_tile(doc: Document) -> None:
    """Sections cover the whole text, in order, without gaps or overlaps."""
    assert doc.sections, "no sections"
    assert doc.sections[0].start == 0
    assert doc.sections[-1].end == len(doc.text)
    for prev, nxt in itertools.pairwise(doc.sections):
        assert prev.start < prev.end == nxt.start < nxt.end, (prev, nxt)


def _section_of(doc: Document, needle: str) -> str:
    """The heading path of the section whose text contains ``needle``."""
    at = doc.text.index(needle)
    return next(s.path for s in doc.sections if s.start <= at < s.end)


# --------------------------------------------------------------------------- markdown


def test_markdown_front_matter_title(tmp_path: Path) -> None:
    """Front matter is metadata: its title wins over the H1 and it is not left in the text."""
    doc = _clean(tmp_path / "fm.md", "---\ntitle: From Front Matter\ntags: x\n---\n\n# Heading One\n\nBody text.\n")
    assert doc.title == "From Front Matter"
    assert "title:" not in doc.text and "---" not in doc.text
    assert doc.text.startswith("# Heading One")
    assert doc.metadata["tags"] == "x"


def test_markdown_first_h1_is_title_without_front_matter(tmp_path: Path) -> None:
    """Without front matter the first H1 names the document, even after an H2 and some prose."""
    doc = _clean(tmp_path / "h1.md", "Intro line.\n\n## Minor\n\ntext\n\n# The Real Title\n\nmore\n\n# Second H1\n")
    assert doc.title == "The Real Title"


def test_markdown_file_stem_is_title_without_front_matter_or_h1(tmp_path: Path) -> None:
    """The file name is the last resort, with _ and - read as spaces."""
    doc = _clean(tmp_path / "vector_index-tuning.md", "## Only an H2\n\nSome text.\n")
    assert doc.title == "vector index tuning"


def test_markdown_inline_html_reduced_to_text(tmp_path: Path) -> None:
    """Docs sites embed HTML in Markdown; its text matters, its tags are noise."""
    doc = _clean(
        tmp_path / "html.md",
        '# Page\n\nBefore.\n\n<div class="alert note">Keep this</div>\n\n'
        "<table><tr><th>A</th><th>B</th></tr><tr><td>1</td><td>2</td></tr></table>\n\nAfter <b>bold</b> text.\n",
    )
    assert "Keep this" in doc.text
    assert "<div" not in doc.text and "alert note" not in doc.text and "<td>" not in doc.text
    assert "<b>" not in doc.text and "After bold text." in doc.text
    assert re.search(r"A\W+B", doc.text) and "AB" not in doc.text  # cells stay apart
    assert re.search(r"1\W+2", doc.text) and "12" not in doc.text


def test_markdown_placeholders_are_kept(tmp_path: Path) -> None:
    """<your_token> is content in docs (a placeholder), not an HTML tag to strip."""
    doc = _clean(tmp_path / "p.md", "Send `Authorization: Bearer <your_token>` and call <endpoint_url> now.\n")
    assert "<your_token>" in doc.text and "<endpoint_url>" in doc.text


def test_markdown_link_targets_dropped_text_kept(tmp_path: Path) -> None:
    """A URL is markup that dilutes embeddings and BM25; the link's words are content."""
    doc = _clean(tmp_path / "l.md", "See [the index guide](https://example.com/g.html) and ![a diagram](img/d.png).\n")
    assert "See the index guide and a diagram." in doc.text
    assert "example.com" not in doc.text and "img/d.png" not in doc.text


def test_markdown_code_fence_kept_verbatim_and_hash_lines_are_not_headings(tmp_path: Path) -> None:
    """Shell comments in fences look like headings; treating them as such would corrupt section paths."""
    code = "```bash\n# install the client\npip install pymilvus  <br> [x](y)\n## not a heading either\n```"
    doc = _clean(tmp_path / "c.md", f"# Setup\n\nRun this:\n\n{code}\n\n## Next\n\nDone.\n")
    assert code in doc.text
    assert _paths(doc) == ["Setup", "Setup > Next"]
    assert _section_of(doc, "# install the client") == "Setup"


def test_markdown_inline_code_is_kept_verbatim(tmp_path: Path) -> None:
    """Inline code is as literal as a fence: an HTML tag or bracket expression inside backticks is the content."""
    doc = _clean(tmp_path / "i.md", "Wrap it in a `<div>` element; index with `arr[0](x)`.\n")
    assert "`<div>`" in doc.text and "`arr[0](x)`" in doc.text


def test_markdown_heading_paths_nest_and_pop(tmp_path: Path) -> None:
    """Paths follow the heading stack: deeper levels append, siblings and shallower levels pop."""
    doc = _clean(
        tmp_path / "n.md",
        "Preamble.\n\n# Title\n\nt\n\n## Sub\n\ns\n\n### Subsub\n\nss\n\n## Sibling\n\nsib\n\n"
        "### Deep\n\nd\n\n# Other Top\n\no\n",
    )
    assert _paths(doc) == [
        "",
        "Title",
        "Title > Sub",
        "Title > Sub > Subsub",
        "Title > Sibling",
        "Title > Sibling > Deep",
        "Other Top",
    ]
    assert _section_of(doc, "ss") == "Title > Sub > Subsub"
    assert _section_of(doc, "sib") == "Title > Sibling"
    assert _section_of(doc, "Preamble") == ""
    _assert_sections_tile(doc)


def test_markdown_inline_markup_stripped_from_heading_paths(tmp_path: Path) -> None:
    """`code`, *emphasis* and links in headings would make paths noisy."""
    doc = _clean(tmp_path / "m.md", "# The `search` API\n\nx\n\n## [Params](p.md) *in* depth\n\ny\n")
    assert _paths(doc) == ["The search API", "The search API > Params in depth"]


# --------------------------------------------------------------------------- html


PAGE = (
    "<html><head><title>Vacuuming Guide</title></head><body>"
    "<header><div class='brand'>SITE-HEADER-CHROME</div></header>"
    "<nav><a href='/'>Home</a> <a href='/prev'>Prev</a> NAV-CHROME-TEXT</nav>"
    "<main><article>"
    "<h2>Basics</h2><p>VACUUM reclaims storage occupied by dead tuples in PostgreSQL tables. Plain VACUUM can run "
    "alongside normal reads and writes on the table.</p>"
    "<h2>Full vacuum</h2><p>VACUUM FULL rewrites the entire table into a new disk file and returns space to the "
    "operating system, but it takes an ACCESS EXCLUSIVE lock while it runs.</p>"
    "<pre>VACUUM (VERBOSE, ANALYZE) onek;\n    SELECT 1;</pre>"
    "<table><tr><th>Option</th><th>Meaning</th></tr><tr><td>FULL</td><td>rewrite the table</td></tr></table>"
    "</article></main>"
    "<footer><p>FOOTER-CHROME-TEXT Copyright 2024</p></footer></body></html>"
)


def test_html_chrome_dropped_content_kept(tmp_path: Path) -> None:
    """Navigation, headers and footers repeat on every page and would pollute every search."""
    doc = _clean(tmp_path / "page.html", PAGE)
    for chrome in ("SITE-HEADER-CHROME", "NAV-CHROME-TEXT", "FOOTER-CHROME-TEXT", "Copyright"):
        assert chrome not in doc.text
    assert "VACUUM reclaims storage occupied by dead tuples" in doc.text
    assert "ACCESS EXCLUSIVE lock" in doc.text


def test_html_title_element_is_title(tmp_path: Path) -> None:
    """Without an H1 the <title> names the page."""
    assert _clean(tmp_path / "page.html", PAGE).title == "Vacuuming Guide"


def test_html_trail_from_the_up_link_or_breadcrumbs(tmp_path: Path) -> None:
    """The page's chapter is kept (for the text that is embedded), though the navigation that names it is not."""
    docbook = (
        "<html><head><title>43.9. Errors and Messages</title></head><body><div class='navheader'>"
        "<a accesskey='u' href='plpgsql.html' title='Chapter 43. PL/pgSQL'>Up</a></div>"
        "<div class='sect1'><h2>43.9. Errors and Messages</h2><p>RAISE EXCEPTION aborts.</p></div></body></html>"
    )
    doc = _clean(tmp_path / "docbook.html", docbook)
    assert doc.metadata["trail"] == ["Chapter 43. PL/pgSQL"]
    assert "Chapter 43" not in doc.text
    crumbs = (
        "<html><head><title>Install</title></head><body><nav aria-label='Breadcrumb'><ol>"
        "<li><a href='/'>Home</a></li><li><a href='/guide'>User Guide</a></li><li><a href='#'>Install</a></li>"
        "</ol></nav><main><h1>Install</h1><p>pip install it.</p></main></body></html>"
    )
    assert _clean(tmp_path / "crumbs.html", crumbs).metadata["trail"] == ["User Guide"]
    assert "trail" not in _clean(tmp_path / "plain.html", PAGE).metadata


@pytest.mark.shared
def test_postgresql_pages_know_their_chapter() -> None:
    if not PG_HTML.is_dir():
        pytest.skip("../shared is absent")
    found = discover([PG_HTML / "plpgsql-errors-and-messages.html"])
    doc = clean(read(found.files[0]))
    assert doc.metadata["trail"] == ["Chapter 43. PL/pgSQL — SQL Procedural Language"]
    chunk = Chunker().split(doc)[0]
    assert chunk.search_text.startswith("Chapter 43. PL/pgSQL — SQL Procedural Language > 43.9. Errors and Messages")


def test_html_headings_become_markdown_headings_and_sections(tmp_path: Path) -> None:
    """h1/h2 must survive as heading lines so the section map (and citations) can use them."""
    page = PAGE.replace("<article>", "<article><h1>Vacuuming Guide</h1><p>Intro paragraph about vacuum.</p>")
    doc = _clean(tmp_path / "page.html", page)
    lines = doc.text.splitlines()
    assert "# Vacuuming Guide" in lines and "## Basics" in lines and "## Full vacuum" in lines
    assert _paths(doc) == ["Vacuuming Guide", "Vacuuming Guide > Basics", "Vacuuming Guide > Full vacuum"]
    assert _section_of(doc, "ACCESS EXCLUSIVE") == "Vacuuming Guide > Full vacuum"
    _assert_sections_tile(doc)


def test_html_pre_and_table_kept(tmp_path: Path) -> None:
    """Code samples and table cells are often the answer; they must not be dropped as boilerplate."""
    doc = _clean(tmp_path / "page.html", PAGE)
    assert "VACUUM (VERBOSE, ANALYZE) onek;\n    SELECT 1;" in doc.text  # indentation kept too
    for cell in ("Option", "Meaning", "FULL", "rewrite the table"):
        assert cell in doc.text
    assert re.search(r"Option\W+Meaning", doc.text) and re.search(r"FULL\W+rewrite the table", doc.text)


def test_html_prose_identifiers_are_not_markdown_escaped(tmp_path: Path) -> None:
    """SQL identifiers with underscores are the words people search for; they must stay literal."""
    prose = "Watch pg_stat_activity and the title_idx index [see notes] for a*b."
    doc = _clean(tmp_path / "page.html", PAGE.replace("</article>", f"<p>{prose}</p></article>"))
    assert prose in doc.text


# --------------------------------------------------------------------------- rst, text, pdf


def test_rst_underlined_headings_give_sections(tmp_path: Path) -> None:
    """reST adornment levels are learned in order of appearance, as docutils does."""
    doc = _clean(
        tmp_path / "intro.rst",
        "=========\nTokenizer\n=========\n\nIntro.\n\nAnalyzers\n---------\n\nAn analyzer combines filters.\n\n"
        "Lowercase\n~~~~~~~~~\n\nLowercases.\n\nStemmers\n--------\n\nStems words.\n",
    )
    assert doc.title == "Tokenizer"
    assert _paths(doc) == [
        "Tokenizer",
        "Tokenizer > Analyzers",
        "Tokenizer > Analyzers > Lowercase",
        "Tokenizer > Stemmers",
    ]
    assert _section_of(doc, "Stems words") == "Tokenizer > Stemmers"
    _assert_sections_tile(doc)


def test_text_is_one_section(tmp_path: Path) -> None:
    """Plain text has no structure: one untitled section over the whole (stripped) text, titled by file name."""
    doc = _clean(tmp_path / "release-notes.txt", "\n\nLine one.\r\n# not a heading in text\r\n\n")
    assert doc.text == "Line one.\n# not a heading in text"
    assert doc.sections == [Section(0, len(doc.text), "")]
    assert doc.title == "release notes"


def test_pdf_sections_are_pages(tmp_path: Path) -> None:
    """Page numbers are what a PDF citation needs."""
    path = tmp_path / "manual.pdf"
    c = canvas.Canvas(str(path))
    c.setTitle("Operations Manual")
    for text in ("Backups are taken nightly.", "Restores need the WAL archive."):
        c.drawString(72, 720, text)
        c.showPage()
    c.save()
    doc = _clean(path, path.read_bytes())
    assert doc.title == "Operations Manual"
    assert _paths(doc) == ["Page 1", "Page 2"]
    assert _section_of(doc, "Backups are taken nightly.") == "Page 1"
    assert _section_of(doc, "Restores need the WAL archive.") == "Page 2"
    assert doc.metadata["pages"] == 2
    _assert_sections_tile(doc)


def test_only_whitespace_after_cleaning_is_refused(tmp_path: Path) -> None:
    """A file that is all markup or all front matter must fail loudly, not index an empty document."""
    with pytest.raises(LoadError, match="no text"):
        _clean(tmp_path / "tags.md", "<div>\n  <span> </span>\n</div>\n<!-- only a comment -->\n")
    with pytest.raises(LoadError, match="no text"):
        _clean(tmp_path / "fm.md", "---\ntitle: Nothing else\n---\n\n")


def test_punctuation_soup_is_refused_like_an_empty_file(tmp_path: Path) -> None:
    """A file of brackets and symbols only has nothing to search: it is reported, not made into junk chunks."""
    with pytest.raises(LoadError, match="not a letter or digit"):
        _clean(tmp_path / "soup.md", "[[[[((((\n" * 1000 + "}{!?--**\n")
    assert "1" in _clean(tmp_path / "one.md", "[[[[((((\n" * 10 + "1\n").text  # one digit is text


def test_unclosed_comment_opening_a_line_hides_the_rest(tmp_path: Path) -> None:
    """CommonMark: an HTML block opened by ``<!--`` runs to ``-->`` or the end, as renderers show it."""
    doc = _clean(tmp_path / "c.md", "# Kept\n\nVisible words.\n\n<!-- draft x\n" + "<!-- x " * 1000 + "\n")
    assert "Visible words." in doc.text and "draft" not in doc.text and "x" not in doc.text.split("words.")[1]
    with pytest.raises(LoadError, match="no text"):
        _clean(tmp_path / "all.md", "<!-- x " * 1000)
    # mid-line, an unclosed opener is literal text (CommonMark inline HTML needs its closer)
    assert "a <!-- b" in _clean(tmp_path / "inline.md", "Text a <!-- b and more.\n").text


def test_utf16_markdown_heading_is_recognised(tmp_path: Path) -> None:
    """An encoding mark must not change what the first line means."""
    doc = _clean(tmp_path / "u16.md", b"\xff\xfe" + "# Überschrift\n\nText.\n".encode("utf-16-le"))
    assert doc.title == "Überschrift"
    assert _paths(doc) == ["Überschrift"]


# --------------------------------------------------------------------------- bad input

# 1,289 characters without a space, as in the adversarial report: Chinese is written without spaces.
CJK_PARAGRAPH = ("向量数据库把文本的含义存成向量，并按相似度检索最接近的段落。" * 45)[:1289]


@pytest.mark.parametrize("suffix", [".md", ".txt", ".html"])
def test_cjk_paragraph_is_kept_and_chunked(tmp_path: Path, suffix: str) -> None:
    """A long Chinese paragraph is prose, not a blob: every character reaches the chunks."""
    body = f"<p>{CJK_PARAGRAPH}</p>" if suffix == ".html" else CJK_PARAGRAPH
    doc = _clean(tmp_path / f"zh{suffix}", f"# 向量\n\n{body}\n" if suffix != ".html" else body)
    chunks = Chunker().split(doc)
    joined = "".join(c.text for c in chunks).replace("\n", "")
    for sentence in CJK_PARAGRAPH.split("。"):
        assert sentence in joined
    assert max(len(c.text) for c in chunks) <= 512


@pytest.mark.parametrize("suffix", [".md", ".txt", ".html"])
def test_a_long_line_of_one_letter_is_reported_not_chunked(tmp_path: Path, suffix: str) -> None:
    """5 MB without a space is a blob: reported, where HTML gave one chunk per 461 characters (11,000)."""
    run = "x" * (5 * 2**20)
    with pytest.raises(LoadError, match=r"blob|no text"):
        _clean(tmp_path / f"line{suffix}", f"<html><body><p>{run}</p></body></html>" if suffix == ".html" else run)


def test_blob_inside_a_page_is_dropped_and_the_prose_kept(tmp_path: Path) -> None:
    blob = "QUJD" * 50_000  # a base64 image pasted inline
    doc = _clean(tmp_path / "p.html", f"<html><body><p>Vacuum reclaims space.</p><p>{blob}</p></body></html>")
    assert doc.text == "Vacuum reclaims space."


def test_backtick_fence_lines_do_not_become_chunks(tmp_path: Path) -> None:
    """Lines of 80 backticks are empty fenced blocks, pair after pair: no content, no chunks."""
    fences = ("`" * 80 + "\n") * 25_000
    with pytest.raises(LoadError, match="no text"):
        _clean(tmp_path / "fences.md", fences)
    doc = _clean(tmp_path / "mixed.md", "# Title\n\nProse.\n\n" + fences + "```py\nx = 1\n```\n")
    assert doc.text == "# Title\n\nProse.\n\n```py\nx = 1\n```"


# --------------------------------------------------------------------------- real PostgreSQL pages

PG_PAGES = ["sql-createindex.html", "sql-vacuum.html", "routine-vacuuming.html"]


def _pg_doc(name: str) -> Document:
    path = PG_HTML / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (shared corpus not checked out)")
    return clean(read(discover([path]).files[0]))


def _text_of(markup: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", markup)).split())


def _nav_chrome(name: str) -> tuple[set[str], set[str]]:
    """The link words and whole rows of the page's DocBook navheader/navfooter tables."""
    markup = (PG_HTML / name).read_text(encoding="utf-8")
    blocks = re.findall(r'<div class="nav(?:header|footer)">(.*?)</div>', markup, re.DOTALL)
    assert len(blocks) == 2, "page layout changed: expected one navheader and one navfooter"
    links = {_text_of(a) for b in blocks for a in re.findall(r"<a\b[^>]*>(.*?)</a>", b, re.DOTALL)}
    rows = {_text_of(r) for b in blocks for r in re.findall(r"<tr>(.*?)</tr>", b, re.DOTALL)}
    return links, {r for r in rows if len(r.split()) > 1 and set(r.split()) & links}


@pytest.mark.shared
@pytest.mark.parametrize("name", PG_PAGES)
def test_postgres_navigation_chrome_absent_from_chunks(name: str) -> None:
    """Prev/Up/Home/Next rows repeat on 1,000+ pages; a chunk made of them would match every query."""
    doc = _pg_doc(name)
    chunks = Chunker().split(doc)
    assert len(chunks) > 5
    links, rows = _nav_chrome(name)
    assert {"Prev", "Up", "Home", "Next"} <= links
    assert any(r.startswith("Prev Up") for r in rows), rows
    for c in chunks:
        flat = " ".join(c.text.replace("|", " ").split())
        for row in rows:
            assert row not in flat, (c.index, row)
        assert not re.search(r"\b(Prev|Home)\b", c.text), (c.index, c.text)
    assert "PostgreSQL 15.20 Documentation" not in doc.text


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("sql-createindex.html", "CREATE INDEX"),
        ("sql-vacuum.html", "VACUUM"),
        ("routine-vacuuming.html", "25.1. Routine Vacuuming"),
    ],
)
def test_postgres_page_title(name: str, title: str) -> None:
    """The page's <title> names it in citations."""
    assert " ".join(_pg_doc(name).title.split()) == title


@pytest.mark.shared
@pytest.mark.parametrize(
    ("name", "headings"),
    [
        ("sql-createindex.html", ["Description", "Parameters", "Notes", "Examples", "Compatibility"]),
        ("sql-vacuum.html", ["Description", "Parameters", "Outputs", "Notes", "Examples"]),
        ("routine-vacuuming.html", ["Vacuuming Basics", "Recovering Disk Space", "Updating Planner Statistics"]),
    ],
)
def test_postgres_headings_are_chunk_sections(name: str, headings: list[str]) -> None:
    """Section paths are what a citation points to ('CREATE INDEX > Parameters')."""
    chunks = Chunker().split(_pg_doc(name))
    sections = {" ".join(c.section.split()) for c in chunks}
    for heading in headings:
        assert any(heading in s.split(" > ")[-1] for s in sections), (heading, sorted(sections))


@pytest.mark.shared
def test_postgres_example_code_is_literal() -> None:
    """An example statement is the answer to 'how do I create a GIN index'; it must be searchable as written."""
    doc = _pg_doc("sql-createindex.html")
    assert "CREATE INDEX gin" in doc.text  # the example itself survives extraction
    assert "CREATE INDEX gin_idx ON documents_table USING GIN (locations) WITH (fastupdate = off);" in doc.text
