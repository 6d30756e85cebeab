"""Ingest: sync a collection with the files (add, update, unchanged, prune), on real Milvus Lite and MiniLM."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from askdocs.errors import AmbiguousNameError, AskdocsError


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


def _two_folders(tmp_path: Path) -> tuple[Path, Path]:
    """colA and colB each hold readme.md (different texts) and same.md (identical), plus one file of their own."""
    a, b = tmp_path / "colA", tmp_path / "colB"
    for folder, word, own in ((a, "aardvark", "axolotl"), (b, "badger", "bison")):
        folder.mkdir()
        (folder / "readme.md").write_text(f"# Readme {folder.name}\n\nThe {word} ledger lists every release.\n")
        (folder / "same.md").write_text("# Same\n\nIdentical notes about the quokka.\n")
        (folder / f"only-{folder.name}.md").write_text(f"# Own\n\nOnly here: the {own}.\n")
    return a, b


def _old_chunk_id(source: str, doc_hash: str, index: int) -> str:
    """Chunk ids as every collection before root-aware identity was written with them."""
    return hashlib.sha256(f"{source}\x00{doc_hash}\x00{index}".encode()).hexdigest()[:32]


def _rows(index) -> list[dict]:
    fields = ["id", "root", "source", "doc_hash", "chunk_index"]
    return index.store.client.query(index.settings.collection, filter="", output_fields=fields, limit=16000)


def test_same_path_under_two_folders_is_two_documents(make_index, tmp_path: Path) -> None:
    """`ingest colA; ingest colB` used to report "0 added, 1 updated" and lose colA's readme: now both stay."""
    a, b = _two_folders(tmp_path)
    index = make_index()
    assert index.ingest(a).added == 3
    ids_a = {r["id"] for r in _rows(index)}
    assert ids_a == {_old_chunk_id(r["source"], r["doc_hash"], r["chunk_index"]) for r in _rows(index)}, (
        "ids of a collection where no source is shared must stay as before (no re-embedding on upgrade)"
    )
    report = index.ingest(b)
    assert (report.added, report.updated, report.removed) == (3, 0, 0)
    rows = _rows(index)
    assert len(rows) == 6 and len({r["id"] for r in rows}) == 6, "identical same.md files must not share ids"
    assert ids_a <= {r["id"] for r in rows}, "ingesting colB touched colA's rows"

    docs = {d.source: d for d in index.documents()}
    assert set(docs) == {
        "colA/readme.md",
        "colB/readme.md",
        "colA/same.md",
        "colB/same.md",
        "only-colA.md",
        "only-colB.md",
    }
    assert (docs["colA/readme.md"].root, docs["colA/readme.md"].path) == (str(a), "readme.md")
    for mode in ("bm25", "dense", "hybrid"):
        assert index.search("aardvark ledger", k=1, mode=mode)[0].source == "colA/readme.md"
        assert index.search("badger ledger", k=1, mode=mode)[0].source == "colB/readme.md"
    assert {h.source for h in index.search("quokka notes", k=2, mode="bm25")} == {"colA/same.md", "colB/same.md"}
    assert index.search("axolotl", k=1, mode="bm25")[0].source == "only-colA.md"  # unshared: the bare path

    again = index.ingest(a)  # re-ingesting one folder leaves the other's documents alone
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 0, 3, 0)

    (b / "only-colB.md").unlink()
    (a / "readme.md").unlink()  # gone from colA's folder, but colA is not the folder being pruned
    pruned = index.ingest(b, prune=True)
    assert (pruned.removed, pruned.unchanged) == (1, 2)
    assert {d.source for d in index.documents()} == {
        "colA/readme.md",
        "colB/readme.md",
        "colA/same.md",
        "colB/same.md",
        "only-colA.md",
    }

    with pytest.raises(AmbiguousNameError, match=r"colA/readme.md \(.*\), colB/readme.md"):
        index.delete("readme.md")
    assert index.delete("colB/readme.md") == 1
    assert index.delete(str(a / "same.md")) == 1  # the file's full path names it too
    assert {d.source for d in index.documents()} == {"readme.md", "same.md", "only-colA.md"}  # none shared now
    assert index.delete("readme.md") == 1 and index.delete("readme.md") == 0
    assert [d.root for d in index.documents() if d.source == "same.md"] == [str(b)]


def test_two_folders_in_one_run_and_shared_ids_survive_a_rerun(make_index, tmp_path: Path) -> None:
    """Both folders in one run: the first keeps the old id form, the second's ids take its root; a rerun
    computes the same ids, so nothing is re-embedded."""
    a, b = _two_folders(tmp_path)
    index = make_index()
    first = index.ingest(a, b)
    assert (first.added, first.failed) == (6, 0)
    rows = _rows(index)
    old_form = {r["root"] for r in rows if r["id"] == _old_chunk_id(r["source"], r["doc_hash"], r["chunk_index"])}
    assert str(a) in old_form and len({r["id"] for r in rows}) == 6
    assert {r["id"] for r in rows if r["root"] == str(b) and r["source"] == "same.md"}.isdisjoint(
        {r["id"] for r in rows if r["root"] == str(a) and r["source"] == "same.md"}
    )
    again = index.ingest(a, b)
    assert (again.unchanged, again.chunks) == (6, 0)
    (b / "readme.md").write_text("# Readme colB\n\nThe badger ledger now lists nothing.\n")
    changed = index.ingest(b)
    assert (changed.updated, changed.unchanged) == (1, 2)
    assert len(_rows(index)) == 6
    assert index.search("badger ledger lists nothing", k=1, mode="bm25")[0].source == "colB/readme.md"


def test_nested_roots_get_names_that_differ(make_index, tmp_path: Path) -> None:
    """docs/ holds sub/a.md; docs/sub/ ingested on its own holds a.md, as does other/x/: no two names alike
    (``sub/a.md`` would tell docs/sub's a.md from other/x's, but ``sub/a.md`` is docs/'s own document)."""
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "other" / "x").mkdir(parents=True)
    (tmp_path / "docs" / "sub" / "a.md").write_text("# A\n\nThe narwhal page.\n")
    (tmp_path / "other" / "x" / "a.md").write_text("# A\n\nThe walrus page.\n")
    index = make_index()
    index.ingest(tmp_path / "docs")
    index.ingest(tmp_path / "docs" / "sub", tmp_path / "other" / "x")
    names = sorted(d.source for d in index.documents())
    assert names == ["docs/sub/a.md", "sub/a.md", "x/a.md"]
    shown = {h.source for h in index.search("narwhal walrus page", k=3, mode="bm25")}
    assert shown == set(names), "search must name documents as `documents` does"
    only = f'root == "{tmp_path / "docs" / "sub"}"'  # a search that knows nothing of docs/'s own sub/a.md
    assert index.search("narwhal", k=1, mode="bm25", filter=only)[0].source == "docs/sub/a.md"
    assert index.delete("docs/sub/a.md") == 1
    assert sorted(d.source for d in index.documents()) == ["a.md", "sub/a.md"]


def test_collection_left_by_a_collision_before_this_change_recovers(make_index, tmp_path: Path) -> None:
    """Collections made before root-aware identity need no migration and no rebuild: every row already
    carried its root, and ids of unshared sources kept their form.  After the old collision (colA then colB:
    colA's readme.md and same.md silently replaced by colB's), what is stored is exactly colB's rows in the
    old id form, which an ingest of colB alone writes; ingesting colA again now brings its files back
    beside colB's, and colB's rows are not touched."""
    a, b = _two_folders(tmp_path)
    index = make_index()
    index.ingest(b)
    before = _rows(index)
    assert all(r["id"] == _old_chunk_id(r["source"], r["doc_hash"], r["chunk_index"]) for r in before)
    report = index.ingest(a)
    assert (report.added, report.updated, report.removed) == (3, 0, 0)
    assert {r["id"] for r in before} <= {r["id"] for r in _rows(index)}
    assert index.ingest(b).unchanged == 3
    assert {d.source for d in index.documents()} >= {"colA/readme.md", "colB/readme.md"}
