"""``MilvusStore``: one askdocs collection, the parts of ``askdocs.store`` behind the interface the rest uses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from askdocs.errors import StoreError
from askdocs.identity import DocKey
from askdocs.store.connection import RETRY_SECONDS, Connection
from askdocs.store.schema import Schema
from askdocs.store.search import Hit, Searcher
from askdocs.store.writes import DocState, Writer

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from askdocs.chunk import Chunk

_GONE = ("collection not found", "can't find collection", "collection not exist")


class MilvusStore:
    """One askdocs collection.  Connects lazily; every failure names the URI."""

    def __init__(
        self,
        uri: str,
        collection: str,
        token: str | None = None,
        index_type: str = "AUTOINDEX",
        metric_type: str = "COSINE",
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.uri = uri
        self.collection = collection
        self.conn = Connection(uri, token, retry_seconds)
        self.schema = Schema(self.conn, collection, index_type, metric_type)
        self.writer = Writer(self.conn, self.schema)
        self.searcher = Searcher(self.conn, self.schema)

    @property
    def is_lite(self) -> bool:
        return self.conn.lite is not None

    @property
    def client(self) -> MilvusClient:
        return self.conn.client

    def close(self) -> None:
        self.conn.close()
        self.schema.forget()

    def _fresh(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn``; if the collection vanished under the cached metadata (dropped elsewhere), forget it."""
        try:
            return fn(*args, **kwargs)
        except StoreError as exc:
            if any(w in str(exc).lower() for w in _GONE):
                self.schema.forget()
            raise

    # ------------------------------------------------------------------ collection

    def exists(self) -> bool:
        return self.schema.exists()

    def list_collections(self) -> list[str]:
        return list(self.conn.call("list_collections"))

    def meta(self) -> dict[str, Any] | None:
        """The askdocs metadata recorded on the collection, or None if it does not exist."""
        info = self.schema.info()
        return info.meta if info else None

    @property
    def supports_bm25(self) -> bool:
        info = self.schema.info()
        return bool(info and info.has_sparse)

    def check_model(self, model: str, dim: int | None = None) -> None:
        self.schema.check_model(model, dim)

    def create(self, model: str, dim: int, extra: dict[str, Any] | None = None) -> None:
        self.schema.create(model, dim, extra)

    def drop(self) -> bool:
        return self.schema.drop()

    # ------------------------------------------------------------------ writes

    def insert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        self._fresh(self.writer.insert, chunks, vectors)

    def delete(self, expr: str) -> None:
        self._fresh(self.writer.delete, expr)

    def delete_source(self, root: str, source: str, keep_hash: str | None = None, only_hash: str | None = None) -> None:
        self._fresh(self.writer.delete_source, root, source, keep_hash, only_hash)

    def flush(self) -> None:
        self._fresh(self.writer.flush)

    def document_states(self) -> dict[DocKey, DocState]:
        return self._fresh(self.writer.document_states)

    def roots_of(self, sources: Sequence[str]) -> dict[str, set[str]]:
        return self._fresh(self.writer.roots_of, sources)

    def count(self) -> int:
        return self._fresh(self.writer.count)

    # ------------------------------------------------------------------ search

    def following(self, hit: Hit, count: int) -> list[Hit]:
        return self._fresh(self.searcher.following, hit, count)

    def search_dense(self, vectors: np.ndarray, k: int, expr: str = "") -> list[list[Hit]]:
        return self._fresh(self.searcher.dense, vectors, k, expr)

    def search_bm25(self, texts: Sequence[str], k: int, expr: str = "") -> list[list[Hit]]:
        return self._fresh(self.searcher.bm25, texts, k, expr)

    def search_hybrid(
        self,
        vectors: np.ndarray,
        texts: Sequence[str],
        k: int,
        expr: str = "",
        candidates: int = 50,
        rrf_k: int = 60,
        dense_weight: float | None = None,
    ) -> list[list[Hit]]:
        return self._fresh(self.searcher.hybrid, vectors, texts, k, expr, candidates, rrf_k, dense_weight)
