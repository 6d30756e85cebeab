"""The store on the default engine (Milvus Lite 2.5, Milvus's C++ engine): ranking that stays right as
documents arrive, metadata that survives a restart, the file lock, one engine call per search; what it keeps
per chunk and how BM25 reads it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from askdocs.chunk import Chunker
from askdocs.clean import Document, Section
from askdocs.embed import Embedder
from askdocs.errors import StoreError
from askdocs.store import is_lite, lite_engine

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "milvus-docs"


def test_default_engine_is_milvus_lite_2_5() -> None:
    engine = lite_engine()
    assert engine is not None and engine.startswith("2.5."), engine


def test_one_rule_for_lite() -> None:
    assert is_lite("./askdocs.db") and is_lite("/x/y/index.db")
    assert not is_lite("http://127.0.0.1:19530") and not is_lite("https://h:443")


def test_bm25_ranks_a_later_document_first_for_its_words(make_index, tmp_path: Path) -> None:
    """A document ingested after the corpus is scored with the whole collection's statistics (Lite 3 scored
    it as if alone and buried it under older chunks that only repeat one of its words)."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE, corpus)
    decoy = sorted(corpus.rglob("*.md"))[0]
    decoy.write_text(decoy.read_text(encoding="utf-8") + "\n\nzebra zebra\n", encoding="utf-8")
    index = make_index()
    index.ingest(corpus)
    later = tmp_path / "zdir"
    later.mkdir()
    (later / "zebra.md").write_text("# Key rotation\n\nZebra rotates keys every night. zebra zebra.\n")
    report = index.ingest(later)
    assert report.added == 1
    for mode in ("bm25", "hybrid"):
        hits = index.search("Zebra rotates keys", k=5, mode=mode)
        assert hits[0].source == "zebra.md", (mode, [(h.source, h.score) for h in hits])


def test_metadata_survives_a_restart_of_the_engine(make_index, docs: Path, db: str) -> None:
    """Milvus Lite 2.5 drops collection properties on restart; the model must still be known."""
    index = make_index()
    index.ingest(docs)
    index.close()
    again = make_index()
    assert again.store.meta()["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert again.store.supports_bm25


def test_search_makes_one_engine_call_per_route(make_index, docs: Path) -> None:
    index = make_index()
    index.ingest(docs)
    index.search("HNSW", mode="hybrid")  # warm: metadata read once
    client = index.store.client
    calls: list[str] = []
    for name in ("search", "hybrid_search", "has_collection", "describe_collection", "load_collection", "query"):
        original = getattr(client, name)

        def spy(*a, _name=name, _original=original, **kw):
            calls.append(_name)
            return _original(*a, **kw)

        setattr(client, name, spy)
    index.settings.fusion = "rrf"
    index.retriever.dense_weight = None
    # One call for the route.  Which folders hold the hits' sources (the names shown, askdocs.identity) is asked
    # by one small query the first time a source is seen, then remembered for NAME_TTL seconds (the query cost
    # 4-5 ms of a 10 ms hybrid search at 22.5k chunks).  Metadata is never asked again.
    index.retriever.forget_names()
    calls.clear()
    assert index.search("HNSW graph", mode="dense")
    assert calls == ["search", "query"], calls
    for mode, route in (("dense", "search"), ("bm25", "search"), ("hybrid", "hybrid_search")):
        calls.clear()
        assert index.search("HNSW graph", mode=mode)
        assert calls == [route] or (calls == [route, "query"] and mode != "dense"), (mode, calls)  # new sources only
    index.ingest(docs)  # an ingest may make two folders share a path: names are asked again
    calls.clear()
    index.search("HNSW graph", mode="dense")
    assert calls == ["search", "query"], calls


def test_a_file_open_in_another_process_is_named(tmp_path: Path) -> None:
    db = tmp_path / "held.db"
    holder = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-c",
         f"from pymilvus import MilvusClient; c = MilvusClient({str(db)!r}); print('open', flush=True); input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        from askdocs.store import MilvusStore

        store = MilvusStore(str(db), "askdocs")
        with pytest.raises(StoreError, match="already open in another process"):
            store.exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_milvus_lite_3_folder_gets_a_clear_message(tmp_path: Path) -> None:
    from askdocs.store import MilvusStore

    old = tmp_path / "old.db"
    old.mkdir()
    (old / "LOCK").write_text("")
    with pytest.raises(StoreError, match="Milvus Lite 3 index"):
        MilvusStore(str(old), "askdocs").exists()


def test_status_warns_past_the_measured_lite_size(make_index, docs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import askdocs.index

    index = make_index()
    index.ingest(docs)
    assert index.status().warning is None
    monkeypatch.setattr(askdocs.index, "LITE_CHUNK_LIMIT", 2)
    warning = index.status().warning
    assert warning is not None and "Milvus server" in warning and "--uri" in warning


def test_milvus_lite_server_mode_serves_a_file_to_askdocs(make_index, docs: Path, tmp_path: Path) -> None:
    """Milvus Lite 2.5's own server mode (``milvus_lite.server.Server`` with an address), bound to loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "served.db"
    code = (
        "from milvus_lite.server import Server; import sys; "
        f"s = Server({str(db)!r}, '127.0.0.1:{port}'); assert s.init() and s.start(); print('up', flush=True); "
        "sys.stdin.read(); s.stop()"
    )
    server = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "up"
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        index = make_index(milvus_uri=f"http://127.0.0.1:{port}")
        report = index.ingest(docs)
        assert report.added == 4 and report.failed == 0
        assert index.store.supports_bm25
        for mode in ("dense", "bm25", "hybrid"):
            assert index.search("Which lock does VACUUM FULL take?", mode=mode)[0].source == "page.html", mode
        index.close()
    finally:
        assert server.stdin is not None
        server.stdin.close()  # the script then stops the engine process (SIGKILL after 2 s)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


#: Embedded texts as askdocs wrote them before the embedded text had one definition (commit 7ba82f4), with
#: today's chunk ids.  The texts must not change.  The ids embed the chunking version: they changed once, on
#: purpose, when CLEAN_VERSION went to 3 (linear-time cleaning) and CJK characters started to weigh 3 units
#: (7ba82f4's were a3f7de6e… and 60d46ebd…), so older collections re-chunk once; they must not drift again.
BEFORE = [
    (
        "9b765bf75a21f7080856edfa53c3bdac",
        "Server Administration > Setup > Installation > Install\n\n# Install\n\nRun the installer.",
    ),
    (
        "6a0b4339aced4bec9d7c679c87e47516",
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


def test_closing_one_handle_leaves_another_on_the_same_file_working(make_index, docs: Path, db: str) -> None:
    """pymilvus shares one connection per URI, and a client's ``close()`` removed it for every handle: a second
    server on the same file shutting down left the first one answering 503 ("should create connection first")."""
    first = make_index()
    first.ingest(docs)
    second = make_index()
    assert second.search("VACUUM FULL lock", k=1)[0].source == "page.html"
    second.close()
    assert first.search("VACUUM FULL lock", k=1)[0].source == "page.html"
    assert first.store.list_collections() == ["askdocs"]
