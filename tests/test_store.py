"""The Milvus store: what it keeps per chunk and how BM25 reads it, on real Milvus Lite."""

from __future__ import annotations

from pathlib import Path

from askdocs.chunk import Chunker
from askdocs.clean import Document, Section
from askdocs.embed import Embedder

#: Chunk ids and embedded texts as askdocs wrote them before the embedded text had one definition
#: (commit 7ba82f4): they must not change, or existing collections would be re-embedded or go stale.
BEFORE = [
    (
        "a3f7de6ea5f47ca5483a5fa01248c608",
        "Server Administration > Setup > Installation > Install\n\n# Install\n\nRun the installer.",
    ),
    (
        "60d46ebd1e3322bc5cf2fdfffa65c814",
        "Server Administration > Setup > Installation > Install > Options\n\n## Options\n\n"
        "The --prefix option sets the folder.",
    ),
]


def test_chunk_ids_and_embedded_text_are_unchanged(manual_page: Document) -> None:
    chunks = Chunker(512, 51).split(manual_page)
    assert [(c.id, c.search_text) for c in chunks] == BEFORE
    plain = Document(
        source="n.txt",
        root="/r",
        fmt="txt",
        title="",
        text="plain words.\n",
        sections=[Section(0, 13, "")],
        content_hash="",
    )
    assert Chunker(512, 51).split(plain)[0].search_text == "\n\nplain words."  # no context: as before


def test_hits_carry_the_text_that_was_embedded(manual_store, embedder: Embedder) -> None:
    """The store keeps the embedded text (trail included) and hands it back with every hit."""
    store, _ = manual_store
    for hits in (
        store.search_bm25(["prefix option folder"], 2),
        store.search_dense(embedder.embed_queries(["prefix option folder"]), 2),
    ):
        assert hits[0] and {h.id: h.search_text for h in hits[0]}.items() <= dict(BEFORE).items()


def test_bm25_ignores_english_stop_words(make_index, docs: Path) -> None:
    """Stop words would match every chunk (and make BM25 walk the longest posting lists): they match none."""
    index = make_index()
    index.ingest(docs)
    assert index.search("the of and is to", k=3, mode="bm25") == []
    assert index.search("the VACUUM", k=1, mode="bm25")[0].source == "page.html"
