"""Ingest, sync and search through the library, on real Milvus Lite and the packaged MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from askdocs.errors import AskdocsError, CollectionNotFoundError, ModelMismatchError


def test_ingest_every_format_then_search_finds_each(make_index, docs: Path) -> None:
    """Each format is ingested with its metadata, and a query about it retrieves it first."""
    index = make_index()
    report = index.ingest(docs)
    assert (report.added, report.failed, report.unchanged) == (4, 0, 0)
    assert report.chunks == index.store.count() > 4

    cases = {
        "What does the HNSW parameter M mean?": ("guide/hnsw.md", "Graph Indexes > HNSW"),
        "Which lock does VACUUM FULL take?": ("page.html", "Vacuuming Basics > Full vacuum"),
        "How many processes can open a Milvus Lite file?": ("notes.txt", ""),
        "What does an analyzer combine?": ("intro.rst", "Tokenizers > Analyzers"),
    }
    for mode in ("dense", "bm25", "hybrid"):
        results = index.search_many(list(cases), k=3, mode=mode)
        for (query, (source, section)), hits in zip(cases.items(), results, strict=True):
            assert hits, (mode, query)
            assert hits[0].source == source, (mode, query, [h.source for h in hits])
            if mode == "hybrid":
                assert hits[0].section == section
    hit = index.search("VACUUM FULL", k=1, mode="bm25")[0]
    assert hit.title == "Vacuuming Basics"
    assert "NAVIGATION-CHROME-TEXT" not in hit.text and "FOOTER-CHROME-TEXT" not in hit.text


def test_model_mismatch_names_both_models_and_how_to_reindex(make_index, docs: Path, db: str) -> None:
    index = make_index()
    index.ingest(docs)
    index.close()
    other = make_index(embed_model="BAAI/bge-small-en-v1.5")
    with pytest.raises(ModelMismatchError) as err:
        other.search("HNSW", mode="dense")
    msg = str(err.value)
    assert "sentence-transformers/all-MiniLM-L6-v2" in msg and "BAAI/bge-small-en-v1.5" in msg
    assert "askdocs reset" in msg
    with pytest.raises(ModelMismatchError):
        other.ingest(docs)


def test_unset_model_uses_the_collections_own(make_index, docs: Path) -> None:
    index = make_index()
    index.ingest(docs)
    assert index.status().model == "sentence-transformers/all-MiniLM-L6-v2"
    assert make_index().model_name == "sentence-transformers/all-MiniLM-L6-v2"


def test_status_counts_documents_and_chunks(make_index, docs: Path) -> None:
    index = make_index()
    assert not index.status().exists
    with pytest.raises(AskdocsError, match="askdocs ingest"):
        index.search("anything")
    report = index.ingest(docs)
    st = index.status()
    assert (st.exists, st.documents, st.chunks, st.dim, st.bm25) == (True, 4, report.chunks, 384, True)
    assert st.size_bytes and st.size_bytes > 0


def test_delete_one_document(make_index, docs: Path) -> None:
    index = make_index()
    index.ingest(docs)
    assert index.delete("page.html") > 0
    assert index.delete("page.html") == 0
    assert "page.html" not in {d.source for d in index.documents()}


def test_a_search_reads_the_collection_metadata_once(make_index, docs: Path) -> None:
    """The collection's metadata is cached: later searches go straight to the search call."""
    index = make_index(embed_model="all-MiniLM-L6-v2")  # a configured model is checked, once
    index.ingest(docs)
    index.search("HNSW", k=1, mode="dense")
    client = index.store.client
    calls: list[str] = []
    for name in ("has_collection", "describe_collection"):
        real = getattr(client, name)
        setattr(client, name, lambda *a, _real=real, _name=name, **kw: (calls.append(_name), _real(*a, **kw))[1])
    for mode in ("dense", "bm25", "hybrid"):
        assert index.search("HNSW", k=1, mode=mode)
    assert calls == []
    index.reset()
    with pytest.raises(CollectionNotFoundError):
        index.search("HNSW")


def test_lifecycle_warm_up_close_and_a_shared_embedder(make_index, docs: Path, embedder) -> None:
    index = make_index()
    with pytest.raises(CollectionNotFoundError, match="askdocs ingest") as err:
        index.require_collection()
    assert err.value.status == 404
    index.ingest(docs)
    index.require_collection()
    assert index.warm_up().embedder() is embedder  # the shared model is the collection's: it is used
    index.close()
    assert index.embedder() is embedder and index.search("HNSW", k=1)  # usable again after close
