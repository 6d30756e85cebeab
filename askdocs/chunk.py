"""Chunk: split a cleaned document into overlapping chunks that know where they came from.

The splitting itself is langchain's ``RecursiveCharacterTextSplitter`` (paragraph,
then line, sentence and word boundaries).  What askdocs adds is structure: each
section is split on its own so that a chunk never straddles two headings, and
each chunk carries its heading path, offsets and a deterministic id so that
re-ingesting is an upsert, never a duplicate.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from askdocs.clean import CLEAN_VERSION, Document, Section

#: Paragraph, line, then sentence ends: English ones (followed by a space) and the full-width Chinese and
#: Japanese ones, which are followed by no space; then words, then characters.
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", "。", "！", "？", "；", " ", ""]

#: Han, kana, Hangul and full-width forms (CJK punctuation included): one such character weighs
#: ``CJK_WEIGHT`` in the ``chars`` unit.
_CJK = re.compile(
    "[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\ua960-\ua97f"
    "\uac00-\ud7ff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003134f]"
)
#: A CJK character carries about as much as three Latin ones.  Measured: the 18 Chinese dev questions
#: (../shared/qa/milvus-dev-zh.jsonl) are 650 characters, 390 of them CJK, against 1,448 for their English
#: originals: a weight of 3.05 makes the lengths equal.  multilingual-e5-small's tokenizer reads 1.41 CJK
#: characters per token against 3.57 English ones (2.5x).  So 512 units hold about as much in either
#: language, where 512 plain characters of Chinese were 2-3 English chunks' worth.
CJK_WEIGHT = 3


def text_length(text: str) -> int:
    """Length in the ``chars`` unit: characters, each CJK character counting ``CJK_WEIGHT``."""
    if text.isascii():
        return len(text)
    return len(text) + (CJK_WEIGHT - 1) * len(_CJK.findall(text))


def is_cjk(ch: str) -> bool:
    return bool(_CJK.match(ch))


def cjk_share(texts: Iterable[str]) -> float:
    """The CJK share of the texts' content, CJK characters weighed ``CJK_WEIGHT`` against Latin letters.

    Weighed so that a Chinese page with English code and identifiers in it still reads as Chinese.
    """
    cjk = latin = 0
    for t in texts:
        n = len(_CJK.findall(t))
        cjk += n
        latin += sum(ch.isalnum() for ch in t) - n
    return CJK_WEIGHT * cjk / (CJK_WEIGHT * cjk + latin) if cjk else 0.0


@dataclass(frozen=True)
class Chunk:
    id: str
    source: str
    root: str
    title: str
    section: str
    index: int
    n_chunks: int
    start: int
    end: int
    text: str
    doc_hash: str
    trail: str = ""  # the page's place in its manual (e.g. its chapter), outermost first, " > "-joined

    @property
    def context(self) -> str:
        """Trail, title and heading path: what a reader needs to know where the text sits."""
        return context_path(self.title, self.section, self.trail)

    @property
    def search_text(self) -> str:
        """The text that is embedded and BM25-indexed: context first, then the chunk."""
        return search_text(self.title, self.section, self.text, self.trail)


def context_path(title: str, section: str, trail: str = "") -> str:
    """Trail, title and heading path, " > "-joined, the title not repeated when the path starts with it."""
    if not section:
        path = title
    elif section.split(" > ", 1)[0] == title:
        path = section
    else:
        path = f"{title} > {section}"
    return f"{trail} > {path}" if trail else path


def search_text(title: str, section: str, text: str, trail: str = "") -> str:
    """The one definition of what is embedded, BM25-indexed and reranked: context, a blank line, the chunk.

    The store keeps this text beside the chunk, so the reranker reads it back byte for byte; changing it
    changes every vector, so it must stay as it is for existing collections to stay valid.
    """
    return f"{context_path(title, section, trail)}\n\n{text}"


def has_words(text: str) -> bool:
    """Whether ``text`` holds a letter or digit in any script (``str.isalnum`` covers CJK, Cyrillic, ...)."""
    return any(c.isalnum() for c in text)


def chunk_id(source: str, doc_hash: str, index: int, root: str | None = None) -> str:
    """Deterministic primary key: the same file version always yields the same ids.

    ``root`` is given only for a document whose source another root already holds (ingest decides,
    see ``Ingestor``): two identical ``readme.md`` files in two folders then get different ids, while every
    id of a collection where no source is shared stays what it always was (no re-embedding to upgrade).
    """
    key = f"{source}\x00{doc_hash}\x00{index}" if root is None else f"{root}\x00{source}\x00{doc_hash}\x00{index}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def describe_fingerprint(fingerprint: str) -> str:
    """A chunker's fingerprint for people: ``clean3|chars|512|51|ctx2|cjk3`` -> ``512 chars, 51 overlap (...)``.

    Older collections carry the five-part form without ``cjk3`` (CJK characters weighed 1 then).
    """
    parts = fingerprint.split("|")
    if len(parts) not in (5, 6):
        return fingerprint
    clean, unit, size, overlap, ctx = parts[:5]
    versions = f"cleaner v{clean.removeprefix('clean')}, context v{ctx.removeprefix('ctx')}"
    if len(parts) == 6:
        versions += f", a CJK character counts {parts[5].removeprefix('cjk')}"
    return f"{size} {unit}, {overlap} overlap ({versions})"


class Chunker:
    """Splits documents with fixed settings; ``fingerprint`` names those settings."""

    def __init__(
        self,
        chunk_size: int = 512,
        chunk_overlap: int = 51,
        unit: str = "chars",
        length_function: Callable[[str], int] | None = None,
    ) -> None:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        if unit == "tokens" and length_function is None:
            raise ValueError("token-based chunking needs the embedding model's tokenizer as length_function")
        # cjk3: CJK sentence ends and weights (English text chunks exactly as before, but the version
        # hash changes, so collections built before re-chunk once).
        self.fingerprint = f"clean{CLEAN_VERSION}|{unit}|{chunk_size}|{chunk_overlap}|ctx2|cjk{CJK_WEIGHT}"
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self._chars = length_function is None
        self._length = length_function or text_length
        # The splitter cuts overlap-free pieces of (size - overlap); the overlap is then taken from the
        # text before each piece.  langchain's own overlap only repeats whole splits, so with sentences
        # longer than the overlap (most prose) neighbouring chunks would not overlap at all.
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=chunk_size - chunk_overlap,
            chunk_overlap=0,
            length_function=self._length,
            separators=SEPARATORS,
            keep_separator="end",
            add_start_index=True,
        )

    def version_hash(self, content_hash: str) -> str:
        """What the index records per document: file content plus the settings it was chunked with.

        Changing chunk settings (or askdocs's cleaning) therefore re-ingests every document.
        """
        return hashlib.sha256(f"{self.fingerprint}\x00{content_hash}".encode()).hexdigest()[:32]

    def _segments(self, doc: Document) -> Iterator[Section]:
        """Sections, with heading-only ones merged into the section that follows them."""
        pending_start: int | None = None
        for sec in doc.sections:
            body = doc.text[sec.start : sec.end]
            first_line, _, rest = body.lstrip().partition("\n")
            heading_only = first_line.startswith("#") and not rest.strip()
            if heading_only:
                pending_start = sec.start if pending_start is None else pending_start
                continue
            yield Section(pending_start if pending_start is not None else sec.start, sec.end, sec.path)
            pending_start = None
        if pending_start is not None:
            yield Section(pending_start, len(doc.text), doc.sections[-1].path)

    def _overlap_start(self, text: str, floor: int, start: int, end: int) -> int:
        """Move ``start`` back by up to ``chunk_overlap`` (in the chunk unit), to a word boundary.

        Between two CJK characters is a word boundary too: Chinese has no spaces to wait for.
        """
        lo = max(floor, start - self.chunk_overlap * (1 if self._chars else 8))
        for i in range(lo, start):
            before, here = text[i - 1], text[i]
            boundary = i == floor or before.isspace() or is_cjk(before) or is_cjk(here)
            at_word = boundary and not here.isspace()
            if at_word and self._fits(text[i:start], text[i:end]):
                return i
        return start

    def _fits(self, overlap: str, chunk: str) -> bool:
        """The splitter's pieces are ``size - overlap`` long, so in chars an overlap that fits keeps the chunk in."""
        if self._chars:
            return self._length(overlap) <= self.chunk_overlap
        return self._length(overlap) <= self.chunk_overlap and self._length(chunk) <= self.chunk_size

    def split(self, doc: Document) -> list[Chunk]:
        pieces: list[tuple[str, int, str]] = []  # (text, absolute start, section path)
        for seg in self._segments(doc):
            body = doc.text[seg.start : seg.end]
            # A piece with no letter or digit (bracket or punctuation soup) can answer nothing and
            # only crowds the index: a 1 MB soup file made 2,622 such chunks.
            parts = [p for p in self._splitter.create_documents([body]) if has_words(p.page_content)]
            for n, part in enumerate(parts):
                # A heading split off from its first paragraph says nothing on its own: the section
                # path of the next chunk already carries it.
                if n + 1 < len(parts) and all(line.startswith("#") for line in part.page_content.strip().splitlines()):
                    continue
                start = seg.start + part.metadata["start_index"]
                end = start + len(part.page_content)
                if pieces and pieces[-1][2] == seg.path and self.chunk_overlap:
                    start = self._overlap_start(doc.text, max(seg.start, pieces[-1][1]), start, end)
                pieces.append((doc.text[start:end], start, seg.path))
        doc_hash = self.version_hash(doc.content_hash)
        trail = " > ".join(t for t in doc.metadata.get("trail") or () if isinstance(t, str))
        n = len(pieces)
        return [
            Chunk(
                id=chunk_id(doc.source, doc_hash, i),
                source=doc.source,
                root=doc.root,
                title=doc.title,
                section=path,
                index=i,
                n_chunks=n,
                start=start,
                end=start + len(text),
                text=text,
                doc_hash=doc_hash,
                trail=trail,
            )
            for i, (text, start, path) in enumerate(pieces)
        ]
