"""Clean: turn a file's decoded text into clean text plus its structure.

Every format is brought to the same shape, a ``Document`` whose ``text`` keeps
headings, code and tables, and whose ``sections`` map character ranges to a
heading path (``Index Vector Fields > Overview``).  HTML goes through
selectolax and a small renderer (``clean_html``; navigation, headers and footers
dropped) to Markdown; Markdown's headings are found by markdown-it-py, so that ``#`` lines
inside code fences are not mistaken for headings.
"""

from __future__ import annotations

import functools
import html
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from askdocs.errors import LoadError
from askdocs.load import RawDocument, break_long_runs

#: Bumped whenever cleaning changes its output, so existing indexes re-ingest.
#: 2: HTML pages keep their trail (chapter).  3: long runs without spaces (CJK paragraphs) kept
#: instead of dropped as blobs; links whose text or target holds brackets or parentheses reduced
#: correctly; blobs dropped from HTML too.
CLEAN_VERSION = 3


@dataclass(frozen=True)
class Section:
    start: int
    end: int
    path: str  # heading path, outermost first, joined with " > "


@dataclass
class Document:
    source: str
    root: str
    fmt: str
    title: str
    text: str
    content_hash: str
    sections: list[Section] = field(default_factory=list)
    metadata: dict[str, object] = field(default_factory=dict)


# --------------------------------------------------------------------------- headings


def markdown_sections(text: str) -> tuple[list[Section], str | None]:
    """Sections of a Markdown text and its first H1 (a fallback title).

    markdown-it gives each heading's line span, which is what we need to map
    text offsets to heading paths while ignoring ``#`` lines in code blocks.
    """
    from markdown_it import MarkdownIt

    # Block structure only: the inline rule (emphasis, links) costs half the time on real docs and
    # ~20 µs a character on bracket soup ("![![![..."), and heading text is stripped of inline
    # markup below anyway.
    tokens = MarkdownIt("commonmark").enable("table").disable("inline").parse(text)
    line_starts = [0]
    for m in re.finditer("\n", text):
        line_starts.append(m.end())
    headings: list[tuple[int, int, str]] = []  # (offset, level, text)
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.map:
            title = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
            title = _strip_inline_markdown(title)
            if title:
                headings.append((line_starts[tok.map[0]], int(tok.tag[1]), title))
    return _sections_from_headings(text, headings), next((t for _, lvl, t in headings if lvl == 1), None)


def _sections_from_headings(text: str, headings: list[tuple[int, int, str]]) -> list[Section]:
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    if not headings or headings[0][0] > 0:
        sections.append(Section(0, headings[0][0] if headings else len(text), ""))
    for n, (offset, level, title) in enumerate(headings):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        end = headings[n + 1][0] if n + 1 < len(headings) else len(text)
        sections.append(Section(offset, end, " > ".join(t for _, t in stack)))
    return [s for s in sections if s.end > s.start]


# Every pattern in this module runs in linear time: a character class that may not cross the
# delimiter that starts the next attempt ([^\[\]] rather than [^\]]) ends each failed attempt at
# the next candidate, where "[^\]]*" would rescan the rest of the text from every "[" (a 300 kB
# file of brackets took a minute).  Likewise a link target ([^()...]) ends at the next parenthesis
# and a title ([^"]*) at the next quote, so an attempt that gets that far reads only up to the next
# attempt's own "(" or quote.  tests/test_linear.py times the pathological inputs at two sizes.
# The two alternatives start with different characters ("!"/"[" or "*_`").
_INLINE_MD = re.compile(r"!?\[([^\[\]]*)\]\([^()]*\)|[*_`]+")


def _strip_inline_markdown(s: str) -> str:
    return _INLINE_MD.sub(lambda m: m.group(1) or "", s).strip()


# --------------------------------------------------------------------------- markdown

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")  # anchored, one line at a time
# [^<>]* stops at the next "<", where the next attempt starts: no character is read twice.
_HTML_HEADING_OPEN = re.compile(r"<h([1-6])\b[^<>]*>", re.IGNORECASE)
_SCRIPT_STYLE_OPEN = re.compile(r"<(script|style)\b", re.IGNORECASE)
# Only real HTML element names are stripped: docs are full of placeholders like <your_token>.
_TAG_NAMES = (
    "a|abbr|b|big|blockquote|body|br|button|caption|center|cite|code|col|colgroup|dd|del|details|div|dl|dt|em|"
    "figcaption|figure|font|footer|form|h[1-6]|head|header|hr|html|i|iframe|img|input|ins|kbd|label|li|link|main|"
    "mark|meta|nav|ol|p|picture|pre|q|s|samp|section|small|source|span|strike|strong|style|sub|summary|sup|svg|"
    "table|tbody|td|tfoot|th|thead|tr|tt|u|ul|var|video"
)
_CELL_TAG = re.compile(r"</t[dh]\s*>", re.IGNORECASE)
_BLOCK_TAG = re.compile(
    r"</?(?:br|p|div|tr|table|thead|tbody|tfoot|ul|ol|li|dl|dt|dd|blockquote|pre|hr|section|details|summary|"
    r"figure|figcaption|caption|h[1-6])\b[^<>]*>",
    re.IGNORECASE,
)
_URL = r"\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\)"  # one level of parentheses: wiki/Foo_(bar)
_MD_IMAGE = re.compile(r"!\[([^\[\]]*)\]" + _URL)
_MD_LINK = re.compile(r"\[([^\[\]]+)\]" + _URL)
# Tags: [^<>]* cannot cross the "<" where the next attempt starts, so the text is read about once.
_ANY_TAG = re.compile(rf"</?(?:{_TAG_NAMES})(?:\s[^<>]*)?/?>", re.IGNORECASE)
# Starts only at a newline; [ \t]* cannot cross one, so a failed attempt ends within its own line.
_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


Closer = Callable[[str], re.Pattern[str]]


def _sub_spans(
    text: str,
    opener: re.Pattern[str],
    closer: Closer,
    repl: Callable[[str, str], str],
    block_to_end: bool = False,
) -> str:
    """Replace each span from ``opener`` to its closer; ``repl(key, inner)`` gives the new text.

    With ``block_to_end``, an opener with no closer that starts a line (at most three spaces in) hides
    the rest of the text, as CommonMark's HTML block does and every Markdown renderer shows it: an
    unclosed ``<!--`` would otherwise turn a 1 MB file of ``<!-- x`` into 2,300 chunks of junk.

    The key is the opener's first group, lower-cased ("" without one); ``closer(key)`` matches the end
    of the span.  A lazy regex such as ``<!--.*?-->`` rescans the rest of the text from every opener
    that has no closer, which is quadratic (300 kB of unclosed comments took seconds; 64 MB would
    take hours).  Once a closer is missing after one opener it is missing after every later one, so
    each key's failed search happens once and the whole pass stays linear.
    """
    out: list[str] = []
    pos = 0
    dead: set[str] = set()
    # The start of the opener's line, found by scanning back only over text not scanned before: a
    # fresh ``rfind`` from 0 per opener is quadratic on one long line of unclosed openers.
    line_start, scanned = 0, 0
    while (m := opener.search(text, pos)) is not None:
        key = (m.group(1) or "").lower() if opener.groups else ""
        end = None if key in dead else closer(key).search(text, m.end())
        if end is None:
            dead.add(key)
            line_start = max(line_start, text.rfind("\n", scanned, m.start()) + 1)
            scanned = m.start()
            if block_to_end and m.start() - line_start <= 3 and not text[line_start : m.start()].strip(" "):
                out.append(text[pos : m.start()])
                pos = len(text)
                break
            out.append(text[pos : m.end()])
            pos = m.end()
            continue
        out.append(text[pos : m.start()])
        out.append(repl(key, text[m.end() : end.start()]))
        pos = end.end()
    out.append(text[pos:])
    return "".join(out)


_COMMENT_OPEN = re.compile("<!--")
_COMMENT_CLOSE = re.compile("-->")


@functools.cache
def _closing_tag(name: str) -> re.Pattern[str]:
    return re.compile(rf"</{name}\s*>", re.IGNORECASE)


def _heading(key: str, inner: str) -> str:
    return "\n" + "#" * int(key) + " " + _ANY_TAG.sub("", inner).strip() + "\n"


def _reduce_html(segment: str) -> str:
    """Inline HTML in Markdown reduced to its text; table cells stay apart."""
    if "<" in segment:
        segment = _sub_spans(segment, _SCRIPT_STYLE_OPEN, _closing_tag, lambda k, inner: "")
        segment = _sub_spans(segment, _COMMENT_OPEN, lambda k: _COMMENT_CLOSE, lambda k, inner: "", True)
        segment = _sub_spans(segment, _HTML_HEADING_OPEN, lambda k: _closing_tag(f"h{k}"), _heading)
    segment = _CELL_TAG.sub(" | ", segment)
    segment = _BLOCK_TAG.sub("\n", segment)
    segment = _ANY_TAG.sub("", segment)
    # Link targets and image paths are markup, not content: keep the visible text only.
    segment = _MD_LINK.sub(r"\1", _MD_IMAGE.sub(r"\1", segment))
    return html.unescape(segment) if "&" in segment else segment


_BACKTICKS = re.compile(r"`+")


def _code_spans(text: str) -> Iterator[tuple[int, int]]:
    r"""(start, end) of each inline code span: a run of n backticks up to the next run of exactly n.

    The obvious regex, ``(`+)(?:(?!\1).)+?\1``, backtracks over every shorter run at every start and
    takes minutes on a few thousand unmatched backticks.  Here the runs are listed once and each
    opener finds its closer through a per-length queue of later runs, so the work is linear.
    """
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(text)]
    by_length: dict[int, deque[int]] = {}
    for i, (a, b) in enumerate(runs):
        by_length.setdefault(b - a, deque()).append(i)
    i = 0
    while i < len(runs):
        a, b = runs[i]
        later = by_length[b - a]
        while later and later[0] <= i:
            later.popleft()
        if later:
            j = later.popleft()
            yield a, runs[j][1]
            i = j + 1
        else:
            i += 1


def _reduce_prose(segment: str) -> str:
    """Reduce HTML in prose, leaving inline code spans (`<div>`, `a[0](x)`) untouched."""
    out: list[str] = []
    last = 0
    for start, end in _code_spans(segment):
        out.append(_reduce_html(segment[last:start]))
        out.append(segment[start:end])
        last = end
    out.append(_reduce_html(segment[last:]))
    return "".join(out)


def strip_inline_html(md: str) -> str:
    """Reduce HTML outside fenced code blocks and code spans; code is kept byte for byte.

    A fenced block with nothing inside is dropped: it carries no content, and a file of backtick
    lines (each pair an empty block) would otherwise become thousands of chunks of backticks.
    """
    out: list[str] = []
    buf: list[str] = []
    code: list[str] = []  # the open fence's lines, its opening line first
    fence: str | None = None
    for line in md.splitlines(keepends=True):
        m = _FENCE.match(line)
        if fence is None and m:
            out.append(_reduce_prose("".join(buf)))
            buf = []
            fence = m.group(1)[0] * len(m.group(1))
            code = [line]
        elif fence is not None:
            code.append(line)
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                if any(c.strip() for c in code[1:-1]):
                    out.extend(code)
                fence, code = None, []
        else:
            buf.append(line)
    if any(c.strip() for c in code[1:]):  # a fence left open runs to the end of the file
        out.extend(code)
    out.append(_reduce_prose("".join(buf)))
    return _BLANK_RUNS.sub("\n\n", "".join(out)).strip()


def _front_matter(text: str) -> tuple[dict[str, object], str]:
    import frontmatter
    import yaml

    try:
        meta, body = frontmatter.parse(text)
    except (yaml.YAMLError, ValueError, TypeError):
        return {}, text  # malformed front matter is kept as text rather than losing the file
    return {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))}, body


def _clean_markdown(raw: RawDocument) -> tuple[str, str | None, list[Section], dict[str, object]]:
    meta, body = _front_matter(raw.text)
    text = strip_inline_html(body)
    sections, h1 = markdown_sections(text)
    title = meta.get("title") if isinstance(meta.get("title"), str) else None
    return text, title or h1, sections, meta


# --------------------------------------------------------------------------- html


def _clean_html(raw: RawDocument) -> tuple[str, str | None, list[Section], dict[str, object]]:
    from askdocs.clean_html import html_document

    title, trail, text = html_document(raw.text)
    text = _BLANK_RUNS.sub("\n\n", break_long_runs(text, drop_blobs=True)).strip()
    sections, h1 = markdown_sections(text)
    return text, title or h1, sections, {"trail": trail} if trail else {}


# --------------------------------------------------------------------------- text, rst, pdf

# Matched one line at a time; giving back repeated characters never helps "\s*$", so it is linear.
_RST_ADORN = re.compile(r"^([=\-`:'\"~^_*+#<>])\1{2,}\s*$")


def _clean_rst(raw: RawDocument) -> tuple[str, str | None, list[Section], dict[str, object]]:
    """reST headings: a title line underlined (and optionally overlined) by one repeated character.

    docutils would build a whole doctree to learn the same; the adornment rule is all we need.
    """
    text = raw.text.replace("\r\n", "\n").strip()
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    levels: list[str] = []
    headings: list[tuple[int, int, str]] = []
    for i in range(1, len(lines)):
        m = _RST_ADORN.match(lines[i])
        title = lines[i - 1].strip()
        if m and title and not _RST_ADORN.match(lines[i - 1]) and len(lines[i].rstrip()) >= len(title):
            overlined = i >= 2 and lines[i - 2].strip() == lines[i].strip()
            key = m.group(1) + ("o" if overlined else "")
            if key not in levels:
                levels.append(key)
            start = offsets[i - 2] if overlined else offsets[i - 1]
            headings.append((start, levels.index(key) + 1, title))
    sections = _sections_from_headings(text, headings)
    return text, next((t for _, lvl, t in headings if lvl == 1), None), sections, {}


def _clean_text(raw: RawDocument) -> tuple[str, str | None, list[Section], dict[str, object]]:
    text = raw.text.replace("\r\n", "\n").strip()
    return text, None, [Section(0, len(text), "")], {}


def _clean_pdf(raw: RawDocument) -> tuple[str, str | None, list[Section], dict[str, object]]:
    starts = raw.page_starts or [0]
    ends = [*starts[1:], len(raw.text)]
    sections = [Section(s, e, f"Page {n}") for n, (s, e) in enumerate(zip(starts, ends, strict=True), 1) if e > s]
    return raw.text, raw.pdf_title, sections, {"pages": len(starts)}


# No letter or digit anywhere (``[^\W_]`` is a letter or digit in any script); one linear scan.
_NO_WORDS = re.compile(r"[\W_]*")

_CLEANERS: dict[str, Callable[[RawDocument], tuple[str, str | None, list[Section], dict[str, object]]]] = {
    "markdown": _clean_markdown,
    "html": _clean_html,
    "rst": _clean_rst,
    "text": _clean_text,
    "pdf": _clean_pdf,
}


def clean(raw: RawDocument) -> Document:
    """Clean one document; raise ``LoadError`` when nothing readable remains."""
    try:
        text, title, sections, meta = _CLEANERS[raw.file.fmt](raw)
    except LoadError:
        raise
    except RecursionError:
        raise LoadError("document is nested too deeply to parse") from None
    if not text.strip():
        raise LoadError("no text left after cleaning")
    if _NO_WORDS.fullmatch(text):
        raise LoadError("no text left after cleaning: only punctuation and symbols, not a letter or digit")
    title = (title or "").strip() or PurePosixPath(raw.file.source).stem.replace("_", " ").replace("-", " ")
    return Document(
        source=raw.file.source,
        root=str(raw.file.root),
        fmt=raw.file.fmt,
        title=title,
        text=text,
        content_hash=raw.content_hash,
        sections=sections or [Section(0, len(text), "")],
        metadata=meta,
    )
