"""The library's front door: an ``Index`` over one Milvus collection.

It mirrors the CLI (ingest, search, status, documents, delete, reset) and owns
the parts that are expensive to make, the Milvus connection and the embedding
model, so that a caller who keeps one ``Index`` pays for them once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from askdocs.chunk import Chunker
from askdocs.config import SearchMode, Settings, load_settings
from askdocs.embed import (
    _PACKAGED_ALIASES,
    CPU_DEFAULT_MODEL,
    Embedder,
    default_backend,
    default_model,
    make_embedder,
)
from askdocs.errors import AskdocsError
from askdocs.ingest import Ingestor, IngestReport, ProgressSink
from askdocs.retrieve import Reranker, Retriever
from askdocs.store import LITE_CHUNK_LIMIT, Hit, MilvusStore, literal


def canonical_model(name: str) -> str:
    return CPU_DEFAULT_MODEL if name in _PACKAGED_ALIASES else name


@dataclass
class DocumentInfo:
    source: str
    title: str
    chunks: int
    root: str
    complete: bool


@dataclass
class IndexStatus:
    uri: str
    collection: str
    exists: bool
    model: str | None = None
    dim: int | None = None
    documents: int = 0
    chunks: int = 0
    bm25: bool = False
    size_bytes: int | None = None
    chunking: str | None = None
    other_collections: list[str] = field(default_factory=list)
    warning: str | None = None

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class Index:
    """Documents in one Milvus collection, searchable by meaning and by keywords.

    >>> from askdocs import Index
    >>> with Index(milvus_uri="./askdocs.db") as index:   # doctest: +SKIP
    ...     index.ingest("docs/")
    ...     for hit in index.search("What do the parameters of HNSW mean?", k=5):
    ...         print(hit.score, hit.source, hit.section)
    """

    def __init__(
        self, settings: Settings | None = None, *, embedder: Embedder | None = None, **overrides: object
    ) -> None:
        """``embedder`` lets several indexes (or tests) share one loaded model."""
        self.settings = settings.model_copy(update=overrides) if settings else load_settings(**overrides)
        s = self.settings
        self.store = MilvusStore(
            s.milvus_uri, s.collection, s.milvus_token, s.index_type, s.metric_type, s.milvus_retry_seconds
        )
        self._embedder: Embedder | None = embedder
        self._chunker: Chunker | None = None
        self.retriever = Retriever(
            self.store,
            self.embedder,
            rrf_k=s.rrf_k,
            dense_weight=s.dense_weight if s.fusion == "weighted" else None,
            reranker=Reranker(s.rerank_model, s.embed_device) if s.rerank_model else None,
            rerank_candidates=s.rerank_candidates,
        )

    # ------------------------------------------------------------------ parts

    @property
    def model_name(self) -> str:
        """The configured model; else the collection's own; else the machine's default."""
        if self.settings.embed_model:
            return canonical_model(self.settings.embed_model)
        meta = self.store.meta()
        return meta["model"] if meta else default_model()

    @property
    def embed_backend(self) -> str:
        """The configured backend; else the one the collection was built with (queries match its vectors)."""
        if self.settings.embed_backend:
            return self.settings.embed_backend
        meta = self.store.meta()
        if meta:  # collections from before the setting existed were embedded by torch
            return str(meta.get("embed_backend") or "torch")
        return default_backend(self.model_name, self.settings.embed_device)

    def embedder(self) -> Embedder:
        if self._embedder is not None and self._embedder.model_name != self.model_name:
            self.store.check_model(self._embedder.model_name)
        if self._embedder is None:
            model = self.model_name
            self.store.check_model(model)
            s = self.settings
            self._embedder = make_embedder(
                model, self.embed_backend, s.embed_device, s.embed_batch_size, s.query_instruction
            )
        return self._embedder

    def chunker(self) -> Chunker:
        if self._chunker is None:
            s = self.settings
            length = self.embedder().tokenizer_length() if s.chunk_unit == "tokens" else None
            self._chunker = Chunker(s.chunk_size, s.chunk_overlap, s.chunk_unit, length)
        return self._chunker

    def _ensure_collection(self) -> None:
        emb = self.embedder()
        self.store.create(
            emb.model_name, emb.dimension, {"chunking": self.chunker().fingerprint, "embed_backend": emb.backend}
        )

    # ------------------------------------------------------------------ operations

    def ingest(
        self, *paths: str | os.PathLike[str], prune: bool = False, progress: ProgressSink | None = None
    ) -> IngestReport:
        """Add, update (and with ``prune`` remove) documents so the index matches the files."""
        if self.settings.embed_model and self.store.meta():
            self.store.check_model(self.model_name)
        ingestor = Ingestor(
            self.store,
            chunker=self.chunker,
            embedder=self.embedder,
            ensure_collection=self._ensure_collection,
            batch_size=max(self.settings.embed_batch_size * 4, 64),
            progress=progress,
            max_file_bytes=int(self.settings.max_file_mb * 2**20),
        )
        return ingestor.run([os.fspath(p) for p in paths], prune=prune)

    def _require_collection(self) -> None:
        if not self.store.exists():
            raise AskdocsError(
                f"collection {self.settings.collection!r} at {self.settings.milvus_uri} does not exist yet: "
                "run `askdocs ingest PATH...` first"
            )

    def search_many(
        self,
        queries: Sequence[str],
        k: int | None = None,
        mode: SearchMode | None = None,
        filter: str = "",
        timings: dict[str, float] | None = None,
    ) -> list[list[Hit]]:
        """Search several queries at once: one embedding pass, batched Milvus calls."""
        self._require_collection()
        if self.settings.embed_model:
            self.store.check_model(self.model_name)
        s = self.settings
        return self.retriever.search(list(queries), k or s.top_k, mode or s.search_mode, filter, timings)

    def search(self, query: str, k: int | None = None, mode: SearchMode | None = None, filter: str = "") -> list[Hit]:
        return self.search_many([query], k, mode, filter)[0]

    def documents(self) -> list[DocumentInfo]:
        states = self.store.document_states()
        out = []
        for st in sorted(states.values(), key=lambda s: s.source):
            out.append(DocumentInfo(st.source, st.title, st.chunks, st.root, any(st.complete(h) for h in st.versions)))
        return out

    def delete(self, source: str) -> int:
        """Remove one document (by its source path) from the index; returns the chunks removed."""
        states = self.store.document_states()
        st = states.get(source)
        if st is None:
            return 0
        self.store.delete(f"source == {literal(source)}")
        self.store.flush()
        return st.chunks

    def reset(self) -> bool:
        """Drop the collection (e.g. to re-index with another embedding model)."""
        return self.store.drop()

    def status(self) -> IndexStatus:
        s = self.settings
        st = IndexStatus(uri=s.milvus_uri, collection=s.collection, exists=False)
        if s.is_lite and Path(s.milvus_uri).exists():
            path = Path(s.milvus_uri)
            st.size_bytes = (
                sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size
            )
        st.other_collections = [c for c in self.store.list_collections() if c != s.collection]
        meta = self.store.meta()
        if meta is None:
            return st
        states = self.store.document_states()
        st.exists = True
        st.model, st.dim, st.chunking = meta.get("model"), meta.get("dim"), meta.get("chunking")
        st.documents = len(states)
        st.chunks = sum(x.chunks for x in states.values())
        st.bm25 = self.store.supports_bm25
        if s.is_lite and st.chunks > LITE_CHUNK_LIMIT:
            st.warning = (
                f"{st.chunks:,} chunks is past the {LITE_CHUNK_LIMIT:,} up to which Milvus Lite was measured to answer "
                "a hybrid search in under 50 ms: serve this collection from a Milvus server and use --uri http://HOST:19530"
            )
        return st

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
