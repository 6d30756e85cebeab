"""Hybrid search fuses its two concurrently searched lists itself: it must rank as Milvus's rankers do.

Milvus's own ``hybrid_search`` (RRFRanker, WeightedRanker) over the same collection is the oracle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from askdocs.retrieve import fuse

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "milvus-docs"

QUESTIONS = [
    "What do the parameters of HNSW mean?",
    "How do I connect to Milvus Lite?",
    "Which metric types can a vector field use?",
    "What is a partition key?",
    "How are scalar fields indexed?",
]


@pytest.fixture(scope="module")
def sample_index(tmp_path_factory: pytest.TempPathFactory, embedder):
    from askdocs import Index

    ix = Index(milvus_uri=str(tmp_path_factory.mktemp("fusion") / "f.db"), embedder=embedder)
    ix.ingest(SAMPLE)
    yield ix
    ix.close()


@pytest.mark.parametrize("dense_weight", [None, 0.5, 0.3])
def test_fusion_ranks_as_milvus_does(sample_index, dense_weight: float | None) -> None:
    store = sample_index.store
    vectors = sample_index.embedder().embed_queries(QUESTIONS)
    dense = store.search_dense(vectors, 50)
    sparse = store.search_bm25(QUESTIONS, 50)
    ours = fuse(dense, sparse, 10, rrf_k=60, dense_weight=dense_weight, metric=store.metric_type)
    milvus = store.search_hybrid(vectors, QUESTIONS, 10, candidates=50, rrf_k=60, dense_weight=dense_weight)
    for q, a, b in zip(QUESTIONS, ours, milvus, strict=True):
        assert [h.score for h in a] == pytest.approx([h.score for h in b], rel=1e-5), q
        # the same chunks in the same order, except where two scores tie
        for x, y in zip(a, b, strict=True):
            assert x.id == y.id or x.score == pytest.approx(y.score, rel=1e-6), q


def test_hybrid_search_uses_both_lists(sample_index) -> None:
    """A term only BM25 can match and a paraphrase only the embedder can: hybrid finds both."""
    hits = sample_index.search_many(["HNSW efConstruction", "how far apart two vectors are"], k=10, mode="hybrid")
    assert all(len(h) == 10 for h in hits)
    assert hits[0][0].score >= hits[0][-1].score
    assert any("efConstruction" in h.text for h in hits[0])
