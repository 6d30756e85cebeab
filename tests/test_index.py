"""Ingest, sync and search through the library, on real Milvus Lite and the packaged MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from askdocs.errors import AskdocsError, ModelMismatchError


def _ids(index) -> set[str]:
    rows = index.store.client.query(index.settings.collection, filter="", output_fields=["id"], limit=16000)
    return {r["id"] for r in rows}


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


def test_bm25_ignores_english_stop_words(make_index, docs: Path) -> None:
    """Stop words would match every chunk (and make BM25 walk the longest posting lists): they match none."""
    index = make_index()
    index.ingest(docs)
    assert index.search("the of and is to", k=3, mode="bm25") == []
    assert index.search("the VACUUM", k=1, mode="bm25")[0].source == "page.html"


def test_reingest_unchanged_embeds_nothing(make_index, docs: Path) -> None:
    index = make_index()
    first = index.ingest(docs)
    before = _ids(index)
    again = index.ingest(docs)
    assert again.chunks == 0
    assert (again.added, again.updated, again.unchanged) == (0, 0, 4)
    assert "embed" not in again.stages  # the model was not even called
    assert _ids(index) == before and len(before) == first.chunks


def test_changed_file_replaces_its_chunks_and_prune_removes_deleted(make_index, docs: Path) -> None:
    index = make_index()
    index.ingest(docs)
    old = {h.id for h in index.search_many(["HNSW"], k=50, mode="bm25")[0] if h.source == "guide/hnsw.md"}
    assert old

    md = docs / "guide" / "hnsw.md"
    md.write_text(md.read_text() + "\n## DiskANN\n\nDiskANN keeps the Vamana graph on NVMe disks.\n")
    (docs / "notes.txt").unlink()
    report = index.ingest(docs)
    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 1, 2, 0)
    ids = _ids(index)
    assert not old & ids, "chunks of the old version were left behind"
    assert index.search("Vamana graph on NVMe", k=1, mode="bm25")[0].source == "guide/hnsw.md"
    assert {d.source for d in index.documents()} == {"guide/hnsw.md", "page.html", "intro.rst", "notes.txt"}

    pruned = index.ingest(docs, prune=True)
    assert pruned.removed == 1
    assert {d.source for d in index.documents()} == {"guide/hnsw.md", "page.html", "intro.rst"}
    assert all(h.source != "notes.txt" for h in index.search_many(["Milvus Lite local file"], k=10, mode="bm25")[0])


def test_bad_files_are_reported_and_the_rest_ingested(make_index, docs: Path) -> None:
    (docs / "binary.md").write_bytes(b"\x00\x01\x02\x03" * 200)
    (docs / "empty.txt").write_bytes(b"")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n this is not really a pdf \x00\xff")
    (docs / "garbage.txt").write_bytes(bytes(range(0x80, 0x100)) * 40)
    index = make_index()
    report = index.ingest(docs)
    failed = {Path(p).name: reason for p, reason in report.failures}
    assert set(failed) >= {"binary.md", "empty.txt", "broken.pdf"}
    assert "binary" in failed["binary.md"] and "empty" in failed["empty.txt"] and "PDF" in failed["broken.pdf"]
    assert report.added == 4
    assert str(docs / "binary.md") in dict(report.failures)  # the full path is reported


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


def test_filters_restrict_results(make_index, docs: Path) -> None:
    index = make_index()
    index.ingest(docs)
    for mode in ("dense", "bm25", "hybrid"):
        hits = index.search("vacuum tables and graphs", k=10, mode=mode, filter='source like "guide/%"')
        assert hits and {h.source for h in hits} == {"guide/hnsw.md"}


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


def test_nothing_to_ingest_is_a_clear_error(make_index, tmp_path: Path) -> None:
    with pytest.raises(AskdocsError, match="matched no file"):
        make_index().ingest(tmp_path / "nope")


def test_chunk_settings_change_reingests(make_index, docs: Path) -> None:
    index = make_index()
    index.ingest(docs)
    index.close()
    smaller = make_index(chunk_size=128, chunk_overlap=16)
    report = smaller.ingest(docs)
    assert report.updated == 4 and report.chunks > 0
    assert all(len(h.text) <= 128 for h in smaller.search_many(["HNSW graph"], k=20, mode="bm25")[0])


def test_weighted_fusion_is_a_real_alternative(make_index, docs: Path) -> None:
    """fusion=weighted changes the scores (normalised, not reciprocal ranks) and still ranks well."""
    index = make_index(fusion="rrf")
    index.ingest(docs)
    rrf = index.search("Which lock does VACUUM FULL take?", k=3, mode="hybrid")
    index.close()
    weighted = make_index(fusion="weighted", dense_weight=0.6)
    hits = weighted.search("Which lock does VACUUM FULL take?", k=3, mode="hybrid")
    assert hits[0].source == rrf[0].source == "page.html"
    assert hits[0].score > 0.1 > rrf[0].score  # RRF scores are at most 2/(60+1)


def test_same_source_path_from_two_folders_is_reported_not_mixed(make_index, tmp_path: Path) -> None:
    """Sources are relative to their root, so a/index.md and b/index.md collide: the second is reported."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "index.md").write_text("# A\n\nalpha text one.\n")
    (tmp_path / "b" / "index.md").write_text("# B\n\nbeta text two.\n")
    index = make_index()
    report = index.ingest(tmp_path / "a", tmp_path / "b")
    assert (report.added, report.failed) == (1, 1)
    assert report.failures[0][0] == str(tmp_path / "b" / "index.md")
    assert "same source path" in report.failures[0][1]
    assert [d.title for d in index.documents()] == ["A"]
