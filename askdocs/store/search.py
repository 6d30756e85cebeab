"""Search: dense, BM25 and hybrid (fused by Milvus), each one engine call per batch of queries."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from askdocs.store.connection import Connection
from askdocs.store.schema import OUTPUT_FIELDS, Schema
from askdocs.store.writes import literal


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    source: str  # relative to ``root``; searches through ``Retriever`` give the shown name (askdocs.identity)
    title: str
    section: str
    text: str
    chunk_index: int = 0
    start: int = 0
    end: int = 0
    search_text: str = ""  # what was embedded and BM25-indexed (context + text): the reranker reads it
    root: str = ""  # the folder the document was ingested from; ``source`` is relative to it

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": self.score,
            "source": self.source,
            "title": self.title,
            "section": self.section,
            "text": self.text,
        }


def _score(r: Any, bm25: bool) -> float:
    score = float(r["distance"])
    return abs(score) if bm25 else score  # Milvus Lite 3 reports BM25 as a negative distance


def _hit(r: Any, score: float) -> Hit:
    e = r["entity"]
    return Hit(
        id=str(r["id"]),
        score=score,
        source=e["source"],
        title=e["title"],
        section=e["section"],
        text=e["text"],
        chunk_index=int(e["chunk_index"]),
        start=int(e["start"]),
        end=int(e["end"]),
        search_text=e.get("search_text") or "",
        root=e.get("root") or "",
    )


def hits(results: Any, bm25: bool = False) -> list[list[Hit]]:
    """Milvus's search results as Hits, per query."""
    return [[_hit(r, _score(r, bm25)) for r in per_query] for per_query in results]


def _normaliser(metric: str) -> Callable[[float], float]:
    """Milvus's score normalisation for WeightedRanker (norm_score), per metric, as Milvus 2.6 and Lite 3 apply it."""
    if metric == "COSINE":
        return lambda x: (1.0 + x) * 0.5
    if metric == "IP":
        return lambda x: 0.5 + math.atan(x) / math.pi
    if metric == "BM25":
        return lambda x: 2.0 * math.atan(x) / math.pi
    return lambda d: 1.0 - 2.0 * math.atan(d) / math.pi  # distances (L2): smaller is better


def weighted_fuse(dense: Any, sparse: Any, k: int, dense_weight: float, metric: str) -> list[list[Hit]]:
    """Per query, each list adds its weight times its normalised score; a chunk absent from a list gets nothing.

    Written here rather than left to Milvus's WeightedRanker because Milvus Lite 2.5.1's ranker normalises BM25
    as if it were a distance (1 - 2·atan(x)/π), so the best keyword match scored lowest (measured: a chunk with
    BM25 5.66 fused below one with 1.64).  ``dense`` and ``sparse`` are Milvus's own results: only the ``k``
    winners of a query's 100 candidates become Hits (making all of them was 0.2 ms of a 9 ms search).
    """
    norm_d, norm_s = _normaliser(metric), _normaliser("BM25")
    out: list[list[Hit]] = []
    for dq, sq in zip(dense, sparse, strict=True):
        score: dict[str, float] = {}
        row_of: dict[str, Any] = {}
        for found, norm, w, bm25 in ((dq, norm_d, dense_weight, False), (sq, norm_s, 1.0 - dense_weight, True)):
            for r in found:
                i = str(r["id"])
                row_of.setdefault(i, r)
                score[i] = score.get(i, 0.0) + w * norm(_score(r, bm25))
        best = sorted(score, key=lambda i: -score[i])[:k]
        out.append([_hit(row_of[i], score[i]) for i in best])
    return out


class Searcher:
    """The three search routes over one collection."""

    def __init__(self, conn: Connection, schema: Schema) -> None:
        self.conn = conn
        self.schema = schema
        self.collection = schema.collection

    def _loaded_call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        def op(retry: bool) -> Any:
            self.schema.ensure_loaded()
            return getattr(self.conn.connected(), method)(*args, **kwargs)

        return self.conn.retrying(op)

    def following(self, hit: Hit, count: int) -> list[Hit]:
        """The ``count`` chunks after ``hit`` in its document, in order (fewer at the document's end)."""
        expr = (
            f"root == {literal(hit.root)} and source == {literal(hit.source)} and "
            f"chunk_index in [{', '.join(str(hit.chunk_index + i) for i in range(1, count + 1))}]"
        )
        rows = self._loaded_call("query", self.collection, filter=expr, output_fields=["id", *OUTPUT_FIELDS])
        return sorted(
            hits([[{"id": r["id"], "distance": 0.0, "entity": r} for r in rows]])[0], key=lambda h: h.chunk_index
        )

    def dense(self, vectors: np.ndarray, k: int, expr: str = "") -> list[list[Hit]]:
        return hits(self._dense(vectors, k, expr))

    def _dense(self, vectors: np.ndarray, k: int, expr: str) -> Any:
        return self._loaded_call(
            "search",
            self.collection,
            data=[v for v in vectors],
            anns_field="vector",
            limit=k,
            filter=expr,
            output_fields=OUTPUT_FIELDS,
            search_params={"metric_type": self.schema.metric_type},
        )

    def bm25(self, texts: Sequence[str], k: int, expr: str = "") -> list[list[Hit]]:
        return hits(self._bm25(texts, k, expr), bm25=True)

    def _bm25(self, texts: Sequence[str], k: int, expr: str) -> Any:
        self.schema.require_bm25()
        return self._loaded_call(
            "search",
            self.collection,
            data=list(texts),
            anns_field="sparse",
            limit=k,
            filter=expr,
            output_fields=OUTPUT_FIELDS,
            search_params={"metric_type": "BM25"},
        )

    def hybrid(
        self,
        vectors: np.ndarray,
        texts: Sequence[str],
        k: int,
        expr: str = "",
        candidates: int = 50,
        rrf_k: int = 60,
        dense_weight: float | None = None,
    ) -> list[list[Hit]]:
        """Dense and BM25 candidates fused: by Milvus's RRF ranker (one call), or weighted scores (two calls,
        fused by ``weighted_fuse``: see there why not by Milvus)."""
        from pymilvus import AnnSearchRequest, RRFRanker

        self.schema.require_bm25()
        limit = max(k, candidates)
        if dense_weight is not None:
            # one route after the other: on two threads at once Milvus Lite served them no faster (hybrid p50
            # 9.75 and 10.59 ms against 9.51 and 9.73 ms in turn, 22.5k chunks, 2 CPUs)
            dense, sparse = self._dense(vectors, limit, expr), self._bm25(texts, limit, expr)
            return weighted_fuse(dense, sparse, k, dense_weight, self.schema.metric_type)
        ranker = RRFRanker(rrf_k)
        metric = self.schema.metric_type
        out: list[list[Hit]] = []
        vecs = list(vectors)
        for i in range(0, len(vecs), 64):  # batched: one hybrid_search call fuses each query's lists apart
            reqs = [
                AnnSearchRequest(vecs[i : i + 64], "vector", {"metric_type": metric}, limit, expr=expr or None),
                AnnSearchRequest(list(texts[i : i + 64]), "sparse", {"metric_type": "BM25"}, limit, expr=expr or None),
            ]
            res = self._loaded_call(
                "hybrid_search", self.collection, reqs, ranker, limit=k, output_fields=OUTPUT_FIELDS
            )
            out.extend(hits(res))
        return out
