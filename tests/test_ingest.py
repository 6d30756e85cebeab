"""Ingest: sync a collection with the files (add, update, unchanged, prune), on real Milvus Lite and MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from askdocs.errors import AskdocsError


def _ids(index) -> set[str]:
    rows = index.store.client.query(index.settings.collection, filter="", output_fields=["id"], limit=16000)
    return {r["id"] for r in rows}


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
