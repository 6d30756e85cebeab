"""Retrieve: top-k chunks for one or many questions, dense, BM25 or hybrid.

Queries are embedded together (one forward pass for a whole batch) and the
BM25 side runs inside Milvus, so a BM25-only search never loads the embedder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from askdocs.embed import Embedder
from askdocs.store import Hit, MilvusStore

log = logging.getLogger(__name__)

MODES = ("dense", "bm25", "hybrid")


class Retriever:
    def __init__(
        self,
        store: MilvusStore,
        embedder: Callable[[], Embedder],
        rrf_k: int = 60,
        candidates: int = 50,
        dense_weight: float | None = None,
    ) -> None:
        """``dense_weight`` None fuses by RRF; a number fuses normalised scores with that dense share."""
        self.store = store
        self._embedder = embedder
        self.rrf_k = rrf_k
        self.candidates = candidates
        self.dense_weight = dense_weight
        self._warned = False

    def search(
        self,
        queries: Sequence[str],
        k: int,
        mode: str = "hybrid",
        expr: str = "",
        timings: dict[str, float] | None = None,
    ) -> list[list[Hit]]:
        """Top-``k`` hits per query; ``timings`` (when given) receives seconds spent in ``embed`` and ``search``."""
        t = timings if timings is not None else {}
        t.setdefault("embed", 0.0)
        t.setdefault("search", 0.0)
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
        if not queries:
            return []
        if mode != "dense" and not self.store.supports_bm25:
            if mode == "bm25":
                self.store.search_bm25(queries, k, expr)  # raises the clear error
            if not self._warned:
                log.warning("collection has no BM25 index; hybrid search falls back to dense")
                self._warned = True
            mode = "dense"
        start = time.perf_counter()
        if mode == "bm25":
            hits = self.store.search_bm25(queries, k, expr)
            t["search"] += time.perf_counter() - start
            return hits
        vectors = self._embedder().embed_queries(queries)
        mid = time.perf_counter()
        t["embed"] += mid - start
        if mode == "dense":
            hits = self.store.search_dense(vectors, k, expr)
        else:
            hits = self.store.search_hybrid(
                vectors, queries, k, expr, candidates=self.candidates, rrf_k=self.rrf_k, dense_weight=self.dense_weight
            )
        t["search"] += time.perf_counter() - mid
        return hits
