"""HTML to Markdown for the clean stage: selectolax parses, a small renderer writes Markdown.

Why hand-written: measured on the 1,169 pages of the PostgreSQL manual
(benchmarks/results/html_extractors.md), trafilatura kept 9% of headings as
Markdown headings, leaked navigation on 1.3% of pages, dropped every "See Also"
section and escaped identifiers (``pg\\_stat``); html-text and inscriptis keep
no heading structure.  selectolax (Lexbor) drops the chrome by CSS selector and
this ~150-line renderer keeps 100% of headings, code blocks and table cells at
~900 pages/s, about 15x trafilatura's speed.  Headings, code and tables are what
the chunker and the section paths need, so they are what it gets right.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser

_DROP = (
    "script, style, noscript, template, iframe, svg, canvas, form, button, "
    "nav, aside, footer, [role=navigation], [role=banner], [role=contentinfo], "
    "[role=search], [hidden], .navheader, .navfooter"
)
_ADMONITION_TITLES = ", ".join(
    f".{c} > h{i}" for c in ("note", "tip", "warning", "caution", "important") for i in range(1, 7)
)
_HEAD = {f"h{i}": i for i in range(1, 7)}
_BLOCK = frozenset(
    (
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hr",
        "main",
        "ol",
        "p",
        "section",
        "summary",
        "ul",
    )
)
_P, _BR, _H, _RAW, _LI = "\x00", "\x01", "\x02", "\x03", "\x04"  # sentinels
_RAW_RE = re.compile(r"\x03(\d+)\x03")
_SENTINEL_RE = re.compile(r"[\x00-\x04]")


def _render(node, out: list, raw: list, in_cell: bool = False) -> None:
    """Append node's children as text with sentinels: _P block break, _BR line
    break, _H<level>_H heading start, _RAW<i>_RAW pre-rendered block, _LI bullet.

    Iterative, with an explicit stack of (children, text to append after them):
    pages nest elements thousands deep (generated markup, or a hostile upload),
    and a recursive walk dies with RecursionError there.  A table inside a table
    cell is rendered as plain blocks (``in_cell``), so tables cannot recurse either.
    """
    stack = [(node.iter(include_text=True), "")]
    while stack:
        child = next(stack[-1][0], None)
        if child is None:
            out.append(stack.pop()[1])
            continue
        tag = child.tag
        if tag == "-text":
            out.append(child.text_content)
        elif tag[0] == "-":  # comments, doctype
            continue
        elif tag in _HEAD:
            out.append(f"{_P}{_H}{_HEAD[tag]}{_H}")
            stack.append((child.iter(include_text=True), _P))
        elif tag == "pre":
            code = child.text(deep=True).strip("\n")
            fence = "````" if "```" in code else "```"
            raw.append(f"{fence}\n{code}\n{fence}")
            out.append(f"{_P}{_RAW}{len(raw) - 1}{_RAW}{_P}")
        elif tag == "table" and not in_cell:
            out.append(_P)
            _table(child, out, raw)
            out.append(_P)
        elif tag == "li":
            out.append(f"{_P}{_LI}")
            stack.append((child.iter(include_text=True), _P))
        elif tag == "br":
            out.append(_BR)
        elif tag in _BLOCK or tag == "table":
            out.append(_P)
            stack.append((child.iter(include_text=True), _P))
        else:  # inline element
            stack.append((child.iter(include_text=True), ""))


def _flat(node, raw: list) -> str:
    """One-line text of a table cell (block structure and code flattened)."""
    buf: list = []
    _render(node, buf, raw, in_cell=True)
    s = _RAW_RE.sub(lambda m: raw[int(m.group(1))].strip("`\n"), "".join(buf))
    s = re.sub(r"\x02\d\x02|[\x00-\x04]", " ", s)
    return " ".join(s.split()).replace("|", "\\|")


def _table(table, out: list, raw: list) -> None:
    rows = []
    for sec in table.iter():
        if sec.tag == "caption":
            out.append(_P)
            _render(sec, out, raw, in_cell=True)
            out.append(_P)
        trs = (
            [sec]
            if sec.tag == "tr"
            else ([r for r in sec.iter() if r.tag == "tr"] if sec.tag in ("thead", "tbody", "tfoot") else [])
        )
        for tr in trs:
            cells = [c for c in tr.iter() if c.tag in ("td", "th")]
            if cells:
                rows.append(("| " + " | ".join(_flat(c, raw) for c in cells) + " |", len(cells), cells[0].tag == "th"))
    if not rows:
        return
    lines = [rows[0][0]]
    if rows[0][2]:  # header row -> Markdown separator
        lines.append("|" + "---|" * rows[0][1])
    lines += [r[0] for r in rows[1:]]
    raw.append("\n".join(lines))
    out.append(f"{_P}{_RAW}{len(raw) - 1}{_RAW}{_P}")


# Where a page sits in its manual: the "up" link of DocBook and many generators, else a breadcrumb trail.
_UP = "link[rel=up][title], a[rel=up][title], a[accesskey=u][title]"
_CRUMBS = "nav[aria-label*=readcrumb] a, .breadcrumb a, .breadcrumbs a, [itemtype*=BreadcrumbList] [itemprop=name]"
_GENERIC_CRUMBS = frozenset({"home", "docs", "documentation", "index", "contents", "up"})


def page_trail(tree: LexborHTMLParser, title: str) -> list[str]:
    """The titles of the sections a page belongs to, outermost first (empty when the page names none).

    Navigation chrome is dropped from the text, but the one fact in it worth keeping is the page's
    place in the manual: "43.9. Errors and Messages" is about PL/pgSQL only because its chapter says
    so.  The chunker puts this trail in front of the text it embeds and indexes.
    """
    up = tree.css_first(_UP)
    if up is not None:
        name = " ".join((up.attributes.get("title") or "").split())
        return [name] if name and name != title else []
    trail: list[str] = []
    for node in tree.css(_CRUMBS):
        name = " ".join(node.text().split())
        if name and name != title and name.lower() not in _GENERIC_CRUMBS and name not in trail and len(name) < 200:
            trail.append(name)
    return trail[-3:]


def html_to_markdown(html: str) -> tuple[str | None, str]:
    """(title, markdown) of an HTML page: chrome dropped, '#' headings with
    levels normalised (first heading '#', later ones relative to it, at least
    '##'), <pre> fenced, tables as '|' rows, list items as '- ' lines."""
    title, _, text = html_document(html)
    return title, text


#: Elements nested deeper than this lose their tags (their text stays): see ``_flatten_deep``.
MAX_DEPTH = 1000
# A tag's name and the rest of it up to the next "<" or ">": [^<>]* cannot cross the "<" where the
# next match starts, so the pass reads each character once.
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^<>]*>")
# Void elements never hold children; elements whose end tag may be left out (p, li, td...) are
# closed implicitly by the parser, so neither counts towards the depth.
_VOID = ("area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr")
_OPTIONAL_END = ("p", "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "colgroup", "caption", "option")
_UNCOUNTED = frozenset((*_VOID, *_OPTIONAL_END, "optgroup", "rb", "rt", "rp", "html", "head", "body"))


def _flatten_deep(html: str) -> str:
    """Drop the tags of elements nested more than ``MAX_DEPTH`` deep, keeping their text.

    Why before parsing: Lexbor's tree construction checks the stack of open elements at every tag
    (HTML's "in scope" rules), so parsing n nested elements takes O(n^2) time and more: 10,000
    nested divs parsed in 0.2 s, 40,000 in 10 s, 100,000 in minutes.  Real pages nest a few dozen
    deep.  The depth is counted from the tags alone (a linear pass), without the parser's
    implicit closing, so it can only overestimate, and only past ``MAX_DEPTH`` is anything dropped.
    """
    if html.count("<") <= MAX_DEPTH:
        return html
    depth = 0

    def visit(m: re.Match[str]) -> str:
        nonlocal depth
        name = m.group(2).lower()
        if name in _UNCOUNTED or m.group(0).endswith("/>"):
            return m.group(0)
        if m.group(1):  # an end tag
            depth = max(depth - 1, 0)
            return m.group(0) if depth < MAX_DEPTH else ""
        depth += 1
        return m.group(0) if depth <= MAX_DEPTH else ""

    return _TAG.sub(visit, html)


def html_document(html: str) -> tuple[str | None, list[str], str]:
    """(title, trail, markdown): ``html_to_markdown`` plus the page's place in its manual (``page_trail``)."""
    tree = LexborHTMLParser(_flatten_deep(_SENTINEL_RE.sub("", html)))
    t = tree.css_first("title")
    title = " ".join(t.text().split()) if t is not None else ""
    trail = page_trail(tree, title)
    for node in reversed(tree.css(_DROP)):  # reversed: children before parents
        node.decompose()
    for node in reversed(tree.css("header")):  # site header, unless it holds the h1
        if node.css_first("h1") is None:
            node.decompose()
    for node in tree.css(_ADMONITION_TITLES):  # "Note"/"Tip" are not sections
        node.replace_with(node.text() + ":")
    root = tree.css_first("main, [role=main]")
    if root is None:  # a lone <article> is the content; several = a listing
        articles = tree.css("article")
        root = articles[0] if len(articles) == 1 else tree.body
    if root is None:
        return title or None, trail, ""
    out: list = []
    raw: list = []
    _render(root, out, raw)
    blocks: list = []  # str, or [raw_level, text] for headings
    bullet = False
    for blk in "".join(out).split(_P):
        blk = "\n".join(" ".join(line.split()) for line in blk.split(_BR)).strip()
        if not blk:
            continue
        if blk == _LI:
            bullet = True
            continue
        if blk[0] == _LI:
            bullet, blk = True, blk[1:].lstrip()
        m = _RAW_RE.fullmatch(blk)
        if m:
            blocks.append(raw[int(m.group(1))])
        elif blk[0] == _H:
            text = " ".join(blk[3:].split())
            if text:
                blocks.append([int(blk[1]), text])
        else:
            blk = _RAW_RE.sub(lambda m: raw[int(m.group(1))], blk)
            if blk[0] == "#":
                blk = "\\" + blk  # not a heading
            blocks.append(("- " + blk) if bullet else blk)
        bullet = False
    heads = [b for b in blocks if isinstance(b, list)]
    first_is_title = bool(heads) and (heads[0][1] in title or not title)
    for h, n in zip(heads, _levels([h[0] for h in heads], first_is_title), strict=True):
        h[0] = "#" * n + " "
    if heads and not title:
        title = heads[0][1]
    return title or None, trail, "\n\n".join(b if isinstance(b, str) else b[0] + b[1] for b in blocks)


def _levels(raw_levels: list, first_is_title: bool = True) -> list:
    """Markdown levels from <hN> numbers. If the first heading is the page title
    (its text is in <title>, or it is shallower than all the others) it gets 1
    and the others keep their relative depth below it, the shallowest at 2:
    DocBook gives a refentry's title and its sections the same <h2>, a sect1
    page an <h2> title and <h3> sections, a normal page an <h1> and <h2>s.
    Otherwise levels are just shifted so the shallowest heading is 1."""
    if not raw_levels:
        return []
    rest = raw_levels[1:]
    if first_is_title or (rest and raw_levels[0] < min(rest)):
        base = min(rest, default=2)
        return [1] + [min(6, max(2, lv - base + 2)) for lv in rest]
    top = min(raw_levels)
    return [min(6, lv - top + 1) for lv in raw_levels]
