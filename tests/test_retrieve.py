"""Retrieval: search options, fusion, filters and the reranker, on real Milvus Lite and the packaged MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from askdocs.errors import BadInputError
from askdocs.retrieve import Reranker, SearchOptions, passage
from askdocs.store import Hit


def test_search_options_know_the_modes() -> None:
    assert SearchOptions(mode="bm25").replace(k=3) == SearchOptions(k=3, mode="bm25")
    with pytest.raises(BadInputError, match="dense, bm25, hybrid"):
        SearchOptions(mode="fuzzy")  # type: ignore[arg-type]


def test_filters_restrict_results(make_index, docs: Path) -> None:
    index = make_index()
    index.ingest(docs)
    for mode in ("dense", "bm25", "hybrid"):
        hits = index.search("vacuum tables and graphs", k=10, mode=mode, filter='source like "guide/%"')
        assert hits and {h.source for h in hits} == {"guide/hnsw.md"}


def test_one_options_value_carries_k_mode_filter_and_timings(make_index, docs: Path) -> None:
    index = make_index()
    index.ingest(docs)
    timings: dict[str, float] = {}
    opts = SearchOptions(k=2, mode="hybrid", filter='source != "page.html"', timings=timings)
    (hits,) = index.search_many(["Which lock does VACUUM FULL take?"], opts)
    assert len(hits) == 2 and "page.html" not in {h.source for h in hits}
    assert timings["embed"] > 0 and timings["search"] > 0


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


# --------------------------------------------------------------------------- reranking, pure


class _FakeCrossEncoder:
    def __init__(self, scores: list[float]) -> None:
        self.scores = scores
        self.pairs: list[tuple[str, str]] = []

    def predict(self, pairs: list[tuple[str, str]], **_: object) -> list[float]:
        self.pairs = pairs
        return self.scores[: len(pairs)]


def _hit(source: str, score: float = 0.0, section: str = "", title: str = "T") -> Hit:
    return Hit(id=source, score=score, source=source, title=title, section=section, text=f"text of {source}")


def test_reranker_reorders_cuts_to_k_and_keeps_ties_stable() -> None:
    rr = Reranker("unused")
    rr._model = _FakeCrossEncoder([0.1, 0.9, 0.5, 0.9, 0.3])
    got = rr.rerank(["q1", "q2"], [[_hit("a"), _hit("b"), _hit("c")], [_hit("d"), _hit("e")]], k=2)
    assert [[h.source for h in hs] for hs in got] == [["b", "c"], ["d", "e"]]
    assert [h.score for h in got[0]] == [0.9, 0.5]  # the cross-encoder's score replaces the fused one
    rr._model = _FakeCrossEncoder([0.5, 0.5])
    assert [h.source for h in rr.rerank(["q"], [[_hit("x"), _hit("y")]], k=5)[0]] == ["x", "y"]
    assert rr.rerank(["q"], [[]], k=3) == [[]]


def test_reranker_reads_title_and_heading_path() -> None:
    """A hit made by hand (no stored text) is read as the chunker would have built it."""
    assert passage(_hit("a", section="T > HNSW")) == "T > HNSW\n\ntext of a"
    assert passage(_hit("a", section="HNSW")) == "T > HNSW\n\ntext of a"
    assert passage(_hit("a", title="")) == "\n\ntext of a"


def test_reranker_reads_what_was_embedded_trail_included(manual_store) -> None:
    """Hits from Milvus carry the embedded text, so the reranker reads the page's trail too."""
    store, chunks = manual_store
    hits = store.search_bm25(["installer prefix option"], 2)
    rr = Reranker("unused")
    rr._model = fake = _FakeCrossEncoder([0.2, 0.8])
    rr.rerank(["installer prefix option"], hits, k=2)
    embedded = {c.id: c.search_text for c in chunks}
    assert [p for _, p in fake.pairs] == [embedded[h.id] for h in hits[0]]
    assert all(p.startswith("Server Administration > Setup > Installation") for _, p in fake.pairs)
