"""Sentences: a chunk's text cut into the units an answer can quote or cite.

Written by hand because the units are not only sentences: a fenced code block, a
table and a list item are each kept whole (half a code block or one table row is
not an answer), and every unit is returned as a character span of the original
text, so a quote of it is verbatim by construction.  Sentence splitters on PyPI
(pysbd, nltk's punkt) know prose only and would cut code at its dots.

Prose is split after ``.``, ``!``, ``?`` followed by white space and an upper-case
letter, digit, quote or bracket (so ``e.g. the`` and ``v2.4`` stay whole), and
after the CJK full stops ``。！？`` (no space follows those).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_TABLE = re.compile(r"^[ \t]*\|")
_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]+")
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]")
_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[`*]?[A-Z0-9])|(?<=[。！？])")
_ABBREV = re.compile(r"(?:\b(?:e\.g|i\.e|etc|vs|cf|approx|incl|resp|Fig|No|Dr|Mr|Ms)\.|\b[A-Z]\.)$")


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    kind: str
    """``sentence``, ``code``, ``table``, ``item``, ``heading``, or ``fragment`` (a code block cut open)."""

    def of(self, text: str) -> str:
        return text[self.start : self.end]


def _lines(text: str) -> list[tuple[int, int]]:
    out, pos = [], 0
    for line in text.splitlines(keepends=True):
        out.append((pos, pos + len(line.rstrip("\r\n"))))
        pos += len(line)
    return out


def _prose(text: str, start: int, end: int) -> list[Span]:
    """Sentences of one paragraph, as spans with surrounding white space trimmed."""
    out: list[Span] = []
    seg = start
    for m in _END.finditer(text, start, end):
        cut = m.start()
        if cut <= seg or _ABBREV.search(text[seg:cut].rstrip()):
            continue
        out.append(Span(seg, cut, "sentence"))
        seg = m.end()
    out.append(Span(seg, end, "sentence"))
    return [t for s in out if (t := _trim(text, s)) is not None]


def _trim(text: str, s: Span) -> Span | None:
    a, b = s.start, s.end
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return Span(a, b, s.kind) if b > a else None


def split(text: str) -> list[Span]:
    """Every quotable unit of ``text`` in order: sentences, whole code blocks, tables, list items, headings."""
    lines = _lines(text)
    out: list[Span] = []
    i = 0
    para: tuple[int, int] | None = None
    fences = [k for k, (a, b) in enumerate(lines) if _FENCE.match(text[a:b])]
    if len(fences) % 2 and text[lines[fences[0]][0] : lines[fences[0]][1]].strip() in ("```", "~~~"):
        # the chunk begins inside a code block (its opening fence is in the previous chunk): up to the
        # closing fence is a fragment, not prose and not the start of a new block
        k = fences[0]
        out.append(Span(lines[0][0], lines[k][1], "fragment"))
        i = k + 1

    def flush() -> None:
        nonlocal para
        if para is not None:
            out.extend(_prose(text, *para))
            para = None

    while i < len(lines):
        a, b = lines[i]
        line = text[a:b]
        if not line.strip():
            flush()
            i += 1
            continue
        if _FENCE.match(line):
            flush()
            fence = _FENCE.match(line).group(1)  # type: ignore[union-attr]
            j = i + 1
            while j < len(lines) and not text[lines[j][0] : lines[j][1]].lstrip().startswith(fence):
                j += 1
            closed = j < len(lines)
            j = min(j, len(lines) - 1)
            # a fence the chunk boundary cut open is a fragment: not a whole code block
            out.append(Span(a, lines[j][1], "code" if closed else "fragment"))
            i = j + 1
            continue
        if _TABLE.match(line):
            flush()
            j = i
            while j + 1 < len(lines) and _TABLE.match(text[lines[j + 1][0] : lines[j + 1][1]]):
                j += 1
            if (s := _trim(text, Span(a, lines[j][1], "table"))) is not None:
                out.append(s)
            i = j + 1
            continue
        if _ITEM.match(line) or _HEADING.match(line):
            flush()
            kind = "heading" if _HEADING.match(line) else "item"
            j = i
            # an item continues on indented lines that are not themselves items
            while (
                kind == "item"
                and j + 1 < len(lines)
                and text[lines[j + 1][0] : lines[j + 1][1]][:1] in (" ", "\t")
                and not _ITEM.match(text[lines[j + 1][0] : lines[j + 1][1]])
            ):
                j += 1
            if (s := _trim(text, Span(a, lines[j][1], kind))) is not None:
                out.append(s)
            i = j + 1
            continue
        para = (para[0], b) if para is not None else (a, b)
        i += 1
    flush()
    if out and out[0].kind == "sentence" and out[0].start == 0 and text[:1].islower():
        out[0] = Span(out[0].start, out[0].end, "fragment")  # the chunk starts mid-sentence (overlap)
    return out


def sentences(text: str) -> list[str]:
    """The units of :func:`split` as strings."""
    return [s.of(text) for s in split(text)]
