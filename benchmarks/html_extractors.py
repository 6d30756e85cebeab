"""Benchmark of HTML main-content extractors for askdocs.

Runs every candidate over a directory of HTML pages (default: the PostgreSQL 15
manual, /work/shared/corpus/postgresql-15-html) and prints a Markdown table.

Usage:
  python benchmarks/html_extractors.py [CORPUS_DIR] [--limit N] [--only NAME ...]
                                       [--dump DIR] [--pages a.html b.html ...]

Candidates (each is `fn(html: str) -> str`, timed alone, single process):
  bs4-get_text         BeautifulSoup(html, "lxml").get_text() of the whole page
                       (what benchmarks/reference_pipeline.py does)
  html-text            html_text.extract_text(html), whole page
  inscriptis           inscriptis.get_text(html), whole page
  html-text+clean      lxml pre-clean (chrome dropped, '#' heading markers,
                       ``` fences around <pre>), then html_text.extract_text(tree)
  inscriptis+clean     same lxml pre-clean, then Inscriptis(tree).get_text()
  trafilatura          trafilatura.extract(html, output_format="markdown",
                       include_tables=True, include_formatting=True,
                       include_comments=False)                    (default focus)
  trafilatura-recall   ... favor_recall=True
  trafilatura-precision ... favor_precision=True
  trafilatura+main     chrome dropped with selectolax and the body wrapped in
                       <main>, then the default trafilatura call above
  selectolax-text      selectolax pre-clean, then body.text(separator="\n")
  selectolax-md        html_to_markdown() below (selectolax + ~150-line
                       converter); the recommended extractor

Metrics, per page, against a reference built with lxml from the same page:
  leak%    pages where navigation text leaks. The "nav fragments" of a page
           are the texts of every <td>/<th> cell of its div.navheader and
           div.navfooter (Prev, Up, Next, Home, the chapter title line, the
           prev/next page titles), except the page's own <title> text. A page
           leaks if any fragment occurs (whole-word, case-sensitive) more often
           in the output than in the page's real content (body minus the
           nav divs, plus the <title> text once) - i.e. the only way to reach
           that count is the nav bar.
  head%    of <h1>-<h4> section headings (admonition titles such as the "Note"
           <h3> inside div.note are not section headings and are excluded):
           share found as a Markdown ATX line ('#'-'######', outside ```
           fences) with the same text.
  path%    share of those headings whose heading path computed from the
           output's '#' levels (stack: pop while level >= new level) equals the
           expected path, taken from the DOM nesting: the first section heading
           of each enclosing element, outermost first, then the heading itself
           (CREATE INDEX > Parameters > Index Storage Parameters); an owner
           must be the page's first heading or have a smaller <hN>. Raw <hN>
           numbers are not enough: DocBook emits a refentry's title AND its
           sections as <h2>, so "Description" would be a sibling of the title.
  xtra#    output heading lines (outside fences) that match no real heading,
           per page (e.g. "# comment" lines of unfenced code, "### Note ...").
  pre%     <pre> blocks whose whole text is in the output (whitespace ignored).
  cell%    table cells (<td>/<th> outside the nav tables) found in the output
           (whitespace ignored), in document order within each table: each
           cell is searched after the previous match; a match more than 2,000
           characters ahead still counts but does not move the cursor, so one
           stray match of a short cell cannot derail the rest of the table.
  tables lost  tables with under half of their cells found (of all tables).
  words%   bag-of-words recall of the reference content (min of counts).
  empty    pages with None / blank output.
For matching, output and reference are normalised the same way: the
characters * ` | \\ _ and zero-width/soft-hyphen characters are deleted and
whitespace is collapsed.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

import lxml.html
from selectolax.lexbor import LexborHTMLParser

# The recommended extractor is askdocs's own (askdocs/clean_html.py), measured here as shipped.
from askdocs.clean_html import _DROP, _levels, html_to_markdown

DEFAULT_CORPUS = "/work/shared/corpus/postgresql-15-html"

# --------------------------------------------------------------------------
# Other candidates
# --------------------------------------------------------------------------
_XP_DROP = (
    "//script|//style|//noscript|//template|//iframe|//svg|//form|//button|//nav|"
    "//aside|//footer|//header[not(.//h1)]|//*[@role='navigation' or @role='banner' "
    "or @role='contentinfo' or @role='search'] | //*[@hidden] | "
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' navheader ') or "
    "contains(concat(' ', normalize-space(@class), ' '), ' navfooter ')]"
)
_XP_ADMON = " or ".join(
    f"contains(concat(' ', normalize-space(@class), ' '), ' {c} ')"
    for c in ("note", "tip", "warning", "caution", "important")
)


def _to_bytes(html: str) -> bytes:
    # lxml refuses str input that carries an XML encoding declaration
    return html.encode("utf-8")


def lxml_preclean(html: str):
    """lxml tree with chrome dropped, '#' markers in headings (same level rule
    as html_to_markdown) and ``` lines around <pre>. ~25 lines."""
    root = lxml.html.fromstring(_to_bytes(html))
    for el in reversed(root.xpath(_XP_DROP)):
        if el.getparent() is not None:
            el.drop_tree()
    body = root.find("body") if root.find("body") is not None else root
    heads = []
    for h in body.iter("h1", "h2", "h3", "h4", "h5", "h6"):
        par = h.getparent()
        if par is not None and par.xpath(f"boolean(self::*[{_XP_ADMON}])"):
            h.tag = "p"
        else:
            heads.append(h)
    for h, n in zip(heads, _levels([int(h.tag[1]) for h in heads]), strict=True):
        h.text = "#" * n + " " + (h.text or "").lstrip()
    for pre in body.iter("pre"):
        before, after = lxml.html.Element("p"), lxml.html.Element("p")
        before.text = after.text = "```"
        pre.addprevious(before)
        pre.addnext(after)
    return root


def cand_bs4(html: str) -> str:
    import warnings

    from bs4 import BeautifulSoup

    warnings.filterwarnings("ignore", message="It looks like you're using an HTML parser")

    return BeautifulSoup(html, "lxml").get_text()


def cand_html_text(html: str) -> str:
    import html_text

    return html_text.extract_text(lxml.html.fromstring(_to_bytes(html)))


def cand_html_text_clean(html: str) -> str:
    import html_text

    return html_text.extract_text(lxml_preclean(html))


def cand_inscriptis(html: str) -> str:
    import inscriptis

    return inscriptis.get_text(html)


def cand_inscriptis_clean(html: str) -> str:
    from inscriptis import Inscriptis

    return Inscriptis(lxml_preclean(html)).get_text()


def _traf(**kw):
    def run(html: str) -> str:
        import trafilatura

        return trafilatura.extract(
            html, output_format="markdown", include_tables=True,
            include_formatting=True, include_comments=False, **kw) or ""
    return run


def cand_traf_main(html: str) -> str:
    import trafilatura

    tree = LexborHTMLParser(html)
    for node in reversed(tree.css(_DROP)):
        node.decompose()
    t = tree.css_first("title")
    head = f"<title>{t.text()}</title>" if t is not None else ""
    body = tree.body.inner_html if tree.body is not None else ""
    wrapped = f"<html><head>{head}</head><body><main>{body}</main></body></html>"
    return trafilatura.extract(
        wrapped, output_format="markdown", include_tables=True,
        include_formatting=True, include_comments=False) or ""


def cand_selectolax_text(html: str) -> str:
    tree = LexborHTMLParser(html)
    for node in reversed(tree.css(_DROP)):
        node.decompose()
    return tree.body.text(separator="\n") if tree.body is not None else ""


def cand_selectolax_md(html: str) -> str:
    return html_to_markdown(html)[1]


CANDIDATES = {
    "bs4-get_text": (cand_bs4, "bs4"),
    "html-text": (cand_html_text, "html_text"),
    "inscriptis": (cand_inscriptis, "inscriptis"),
    "html-text+clean": (cand_html_text_clean, "html_text"),
    "inscriptis+clean": (cand_inscriptis_clean, "inscriptis"),
    "trafilatura": (_traf(), "trafilatura"),
    "trafilatura-recall": (_traf(favor_recall=True), "trafilatura"),
    "trafilatura-precision": (_traf(favor_precision=True), "trafilatura"),
    "trafilatura+main": (cand_traf_main, "trafilatura"),
    "selectolax-text": (cand_selectolax_text, "selectolax"),
    "selectolax-md": (cand_selectolax_md, "selectolax"),
}

# --------------------------------------------------------------------------
# Reference and metrics
# --------------------------------------------------------------------------
_KILL = str.maketrans("", "", "*`|\\_\u200b\u00ad\ufeff")
_FENCE = re.compile(r"^\s*(```|~~~)")
_ATX = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
_WORD = re.compile(r"\w+")
_REF_BLOCKS = (
    "p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "pre", "table", "tr",
    "td", "th", "caption", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "hr",
)


def norm(s: str) -> str:
    return " ".join(s.translate(_KILL).split())


def _count(frag: str, text: str) -> int:
    return len(re.findall(r"(?<!\w)" + re.escape(frag) + r"(?!\w)", text))


def _paths(heads):
    """heads: [(level, text)] -> [tuple path] (pop while top level >= level)."""
    stack, out = [], []
    for level, text in heads:
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, text))
        out.append(tuple(t for _, t in stack))
    return out


def reference(html: str) -> dict:
    root = lxml.html.fromstring(_to_bytes(html))
    title_el = root.find(".//title")
    title = norm(title_el.text_content()) if title_el is not None else ""
    navs = root.xpath(
        "//div[contains(concat(' ', normalize-space(@class), ' '), ' navheader ') or "
        "contains(concat(' ', normalize-space(@class), ' '), ' navfooter ')]")
    frags = set()
    for nav in navs:
        for cell in nav.iter("td", "th"):
            t = norm(cell.text_content())
            if t and t != title:
                frags.add(t)
    for el in navs + root.xpath("//script|//style"):
        el.drop_tree()
    body = root.find("body") if root.find("body") is not None else root
    for el in body.iter(*_REF_BLOCKS):  # keep block boundaries as spaces
        el.text = " " + (el.text or "")
        el.tail = " " + (el.tail or "")
    ref_text = norm(body.text_content())
    # Expected heading paths from the DOM, not from <hN> numbers: a heading's
    # path is the first section heading of each enclosing element (outermost
    # first, deduplicated), then itself. DocBook nests div.refentry >
    # div.refsect1 > div.refsect2 and div.sect1 > div.sect2 with the title first.
    # An owner must be the page's first heading or have a smaller <hN> (so a
    # plain wrapper around sibling sections does not nest them).
    sect = [h for h in body.iter("h1", "h2", "h3", "h4", "h5", "h6")
            if norm(h.text_content())
            and not (h.getparent() is not None
                     and h.getparent().xpath(f"boolean(self::*[{_XP_ADMON}])"))]
    first_in: dict = {}
    for h in sect:
        for anc in h.iterancestors():
            first_in.setdefault(anc, h)
    heads = []
    for h in sect:
        path = []
        for anc in reversed(list(h.iterancestors())):
            o = first_in.get(anc)
            if (o is not None and o is not h and (not path or path[-1] is not o)
                    and (o is sect[0] or o.tag < h.tag)):  # owner is shallower
                path.append(o)
        path.append(h)
        heads.append((norm(h.text_content()), tuple(norm(x.text_content()) for x in path),
                      int(h.tag[1]) <= 4))
    pres = [t for t in (norm(p.text_content()) for p in body.iter("pre")) if t]
    tables = []
    for table in body.iter("table"):
        cells = [c for c in (norm(c.text_content()) for c in table.iter("td", "th")) if c]
        if cells:
            tables.append(cells)
    return {
        # the page title may legitimately appear once more (as the doc title)
        "frags": {f: _count(f, ref_text) + _count(f, title) for f in frags},
        "heads": heads,
        "pres": pres,
        "tables": tables,
        "words": Counter(w.lower() for w in _WORD.findall(ref_text)),
    }


def score(ref: dict, out: str) -> dict:
    text = norm(out)
    leak = any(_count(f, text) > n for f, n in ref["frags"].items())
    # heading lines outside code fences
    oheads, fenced = [], False
    for line in out.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else _ATX.match(line.strip())
        if m:
            oheads.append((len(m.group(1)), norm(m.group(2))))
    opaths = _paths(oheads)
    used = [False] * len(oheads)
    h_tot = h_found = h_path = 0
    for t, path, counted in ref["heads"]:
        j = next((j for j, (_, ot) in enumerate(oheads) if not used[j] and ot == t), None)
        if j is not None:
            used[j] = True
        if counted:
            h_tot += 1
            if j is not None:
                h_found += 1
                h_path += opaths[j] == path
    extra = used.count(False)
    flat = text.replace(" ", "")  # pre/cell matching ignores whitespace
    pre_kept = sum(p.replace(" ", "") in flat for p in ref["pres"])
    c_tot = c_found = t_lost = 0
    for cells in ref["tables"]:
        pos, found = None, 0
        for c in cells:
            c = c.replace(" ", "")
            i = flat.find(c, pos or 0)
            if i >= 0:
                found += 1
                if pos is None or i - pos <= 2000:  # far match: no cursor move
                    pos = i + len(c)
        c_tot += len(cells)
        c_found += found
        t_lost += found < len(cells) / 2
    ow = Counter(w.lower() for w in _WORD.findall(text))
    w_tot = sum(ref["words"].values())
    w_kept = sum(min(n, ow[w]) for w, n in ref["words"].items())
    return {
        "leak": leak, "h_tot": h_tot, "h_found": h_found, "h_path": h_path,
        "extra": extra, "pre_tot": len(ref["pres"]), "pre_kept": pre_kept,
        "c_tot": c_tot, "c_found": c_found, "t_lost": t_lost, "w_tot": w_tot, "w_kept": w_kept,
        "empty": not out.strip(), "chars": len(out),
    }


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.1f}" if b else "n/a"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", nargs="?", default=DEFAULT_CORPUS)
    ap.add_argument("--limit", type=int, default=None, help="first N pages (sorted)")
    ap.add_argument("--only", nargs="+", default=None, help="candidate names")
    ap.add_argument("--pages", nargs="+", default=None, help="file names to use")
    ap.add_argument("--dump", default=None, help="write each output to DIR/cand/page.md")
    args = ap.parse_args(argv)

    corpus = Path(args.corpus)
    if not corpus.is_dir():
        print(f"corpus directory {corpus} not found; skipping HTML extractor benchmark")
        return 0
    files = sorted(p for p in corpus.rglob("*") if p.suffix.lower() in (".html", ".htm"))
    if args.pages:
        files = [p for p in files if p.name in set(args.pages)]
    if args.limit:
        files = files[: args.limit]
    if not files:
        print(f"no .html files under {corpus}; skipping")
        return 0
    pages = [(p, p.read_text(encoding="utf-8", errors="replace")) for p in files]
    refs = [reference(h) for _, h in pages]
    mb = sum(len(h.encode()) for _, h in pages) / 1e6
    print(f"{len(pages)} pages, {mb:.1f} MB of HTML from {corpus}\n", file=sys.stderr)

    names = args.only or list(CANDIDATES)
    rows = []
    for name in names:
        fn, module = CANDIDATES[name]
        try:
            __import__(module)
        except ImportError:
            print(f"skipping {name}: {module} not installed", file=sys.stderr)
            continue
        fn(pages[0][1])  # warm-up (imports, lazy init)
        elapsed, agg, leaky, failures = 0.0, Counter(), [], 0
        for (path, html), ref in zip(pages, refs, strict=True):
            t0 = time.perf_counter()
            try:
                out = fn(html) or ""
            except Exception as exc:  # a crash counts as empty output
                failures += 1
                print(f"  {name} failed on {path.name}: {exc!r}", file=sys.stderr)
                out = ""
            elapsed += time.perf_counter() - t0
            s = score(ref, out)
            agg.update({k: int(v) for k, v in s.items()})
            if s["leak"]:
                leaky.append(path.name)
            if args.dump:
                d = Path(args.dump) / name
                d.mkdir(parents=True, exist_ok=True)
                (d / (path.stem + ".md")).write_text(out, encoding="utf-8")
        n = len(pages)
        rows.append((
            name, f"{n / elapsed:.0f}", f"{agg['chars'] / n:.0f}",
            _pct(agg["leak"], n), _pct(agg["h_found"], agg["h_tot"]),
            _pct(agg["h_path"], agg["h_tot"]), f"{agg['extra'] / n:.2f}",
            _pct(agg["pre_kept"], agg["pre_tot"]), _pct(agg["c_found"], agg["c_tot"]),
            f"{agg['t_lost']}/{len([t for r in refs for t in r['tables']])}",
            _pct(agg["w_kept"], agg["w_tot"]), str(agg["empty"]),
        ))
        print(f"  {name}: {elapsed:.1f}s, leaks e.g. {leaky[:3]}, failures {failures}",
              file=sys.stderr)

    hdr = ("candidate", "pages/s", "mean chars", "leak %", "head %", "path %",
           "xtra# /page", "pre %", "cell %", "tables lost", "words %", "empty")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "|".join("---" if i == 0 else "--:" for i in range(len(hdr))) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
