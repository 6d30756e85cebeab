"""Chunk: split a cleaned document into overlapping chunks that know where they came from.

The splitting itself is langchain's ``RecursiveCharacterTextSplitter`` (paragraph,
then line, sentence and word boundaries).  What askdocs adds is structure: each
section is split on its own so that a chunk never straddles two headings, and
each chunk carries its heading path, offsets and a deterministic id so that
re-ingesting is an upsert, never a duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from askdocs.clean import CLEAN_VERSION, Document, Section

SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", " ", ""]


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

    @property
    def context(self) -> str:
        """Title and heading path: what a reader needs to know where the text sits."""
        if not self.section:
            return self.title
        if self.section.split(" > ", 1)[0] == self.title:
            return self.section
        return f"{self.title} > {self.section}"

    @property
    def search_text(self) -> str:
        """The text that is embedded and BM25-indexed: context first, then the chunk."""
        return f"{self.context}\n\n{self.text}"


def chunk_id(source: str, doc_hash: str, index: int) -> str:
    """Deterministic primary key: the same file version always yields the same ids."""
    return hashlib.sha256(f"{source}\x00{doc_hash}\x00{index}".encode()).hexdigest()[:32]


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
        self.fingerprint = f"clean{CLEAN_VERSION}|{unit}|{chunk_size}|{chunk_overlap}|ctx1"
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            length_function=length_function or len,
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

    def split(self, doc: Document) -> list[Chunk]:
        pieces: list[tuple[str, int, str]] = []  # (text, absolute start, section path)
        for seg in self._segments(doc):
            body = doc.text[seg.start : seg.end]
            for part in self._splitter.create_documents([body]):
                if part.page_content.strip():
                    pieces.append((part.page_content, seg.start + part.metadata["start_index"], seg.path))
        doc_hash = self.version_hash(doc.content_hash)
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
            )
            for i, (text, start, path) in enumerate(pieces)
        ]
