"""The library's front door: an ``Index`` over one Milvus collection.

It mirrors the CLI (ingest, search, status, documents, delete, reset) and owns
the parts that are expensive to make, the Milvus connection and the embedding
model, so that a caller who keeps one ``Index`` pays for them once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from askdocs import identity, translate
from askdocs.chunk import Chunker, cjk_share
from askdocs.config import Settings, load_settings
from askdocs.embed import Embedder, canonical_model, default_backend, default_model, make_embedder
from askdocs.errors import CollectionNotFoundError
from askdocs.ingest import Ingestor, IngestReport, ProgressSink
from askdocs.refusal import is_chinese
from askdocs.retrieve import Reranker, Retriever, SearchOptions
from askdocs.store import LITE_CHUNK_LIMIT, Hit, MilvusStore

#: ``bm25_analyzer = "auto"`` picks jieba when at least this share of the first chunks' content is CJK.
CJK_ANALYZER_SHARE = 0.5


@dataclass
class DocumentInfo:
    source: str  # the name shown and accepted by ``delete``: ``path``, or ``colA/path`` where roots share it
    title: str
    chunks: int
    root: str  # the folder it was ingested from
    complete: bool
    path: str = ""  # its path relative to ``root`` (what filters on ``source`` match)


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
    analyzer: str | None = None  # the BM25 analyzer (standard or jieba)
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
        """``embedder`` lets several indexes (or tests) share one loaded model.

        It is used when it is the model this collection needs (the configured one, else the one the
        collection was built with); otherwise the index loads its own, so one server's embedder can
        be offered to every collection without checking first.
        """
        self.settings = settings.model_copy(update=overrides) if settings else load_settings(**overrides)
        s = self.settings
        self.store = MilvusStore(
            s.milvus_uri, s.collection, s.milvus_token, s.index_type, s.metric_type, s.milvus_retry_seconds
        )
        self._shared: Embedder | None = embedder
        self._embedder: Embedder | None = None
        self._chunker: Chunker | None = None
        self._meta: dict[str, Any] | None = None  # the collection's metadata, read once it exists
        self._model_checked = False
        self.last_ingestor: Ingestor | None = None  # the latest ingest's, for its counters (tests, benchmarks)
        self.retriever = Retriever(
            self.store,
            self.embedder,
            rrf_k=s.rrf_k,
            dense_weight=s.dense_weight if s.fusion == "weighted" else None,
            reranker=Reranker(s.rerank_model, s.embed_device) if s.rerank_model else None,
            rerank_candidates=s.rerank_candidates,
        )

    # ------------------------------------------------------------------ lifecycle

    def warm_up(self) -> Index:
        """Load the models now (the embedder, and the reranker when one is configured), not on the first query.

        The generator is not the index's: ``Answerer.warm_up`` loads both.
        """
        if self.retriever.reranker is not None:
            self.retriever.reranker.load()
        self.embedder()
        return self

    def close(self) -> None:
        """Release the Milvus connection and the models this index loaded (a shared embedder stays loaded)."""
        self._embedder = None
        if self.retriever.reranker is not None:
            self.retriever.reranker = Reranker(self.retriever.reranker.model_name, self.settings.embed_device)
        self._meta = None
        self.store.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ parts

    def meta(self) -> dict[str, Any] | None:
        """The collection's askdocs metadata, or None while it does not exist.

        Read from Milvus once the collection exists and cached: a search then costs no
        ``has_collection``/``describe_collection`` round trips.  ``ingest`` and ``reset`` refresh it.
        """
        if self._meta is None:
            self._meta = self.store.meta()
        return self._meta

    def require_collection(self) -> None:
        """Raise ``CollectionNotFoundError`` (with what to do) unless the collection exists."""
        if self.meta() is None:
            raise CollectionNotFoundError(
                f"collection {self.settings.collection!r} at {self.settings.milvus_uri} does not exist yet: "
                "run `askdocs ingest PATH...` first"
            )

    def _check_model(self) -> None:
        """A configured model must be the collection's own; checked once per index."""
        if self.settings.embed_model and not self._model_checked and self.meta() is not None:
            self.store.check_model(self.model_name)
            self._model_checked = True

    @property
    def model_name(self) -> str:
        """The configured model; else the collection's own; else the machine's default."""
        if self.settings.embed_model:
            return canonical_model(self.settings.embed_model)
        meta = self.meta()
        return meta["model"] if meta else default_model()

    @property
    def embed_backend(self) -> str:
        """The configured backend; else the one the collection was built with (queries match its vectors)."""
        if self.settings.embed_backend:
            return self.settings.embed_backend
        meta = self.meta()
        if meta:  # collections from before the setting existed were embedded by torch
            return str(meta.get("embed_backend") or "torch")
        return default_backend(self.model_name, self.settings.embed_device)

    def embedder(self) -> Embedder:
        if self._embedder is None:
            s = self.settings
            if s.embed_url:  # embedding servers: the configured model, else the collection's
                from askdocs.embed_remote import remote_embedder

                meta = self.meta()
                model = canonical_model(s.embed_model) if s.embed_model else (meta or {}).get("model")
                if model:
                    self.store.check_model(model)
                self._embedder = remote_embedder(s, model)
                return self._embedder
            model = self.model_name
            if self._shared is not None and self._shared.model_name == model:
                self._embedder = self._shared
            else:
                self.store.check_model(model)
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

    def _ensure_collection(self, texts: Sequence[str] = ()) -> None:
        """Create the collection if absent; ``texts`` (the first chunks) choose the ``auto`` BM25 analyzer."""
        emb = self.embedder()
        analyzer = self.settings.bm25_analyzer
        if analyzer == "auto":
            analyzer = "jieba" if cjk_share(texts) >= CJK_ANALYZER_SHARE else "standard"
        self.store.create(
            emb.model_name,
            emb.dimension,
            {
                "chunking": self.chunker().fingerprint,
                "embed_backend": emb.backend,
                "analyzer": analyzer,
            },
        )
        self._meta = None  # read again: the collection may be new

    # ------------------------------------------------------------------ operations

    def ingest(
        self, *paths: str | os.PathLike[str], prune: bool = False, progress: ProgressSink | None = None
    ) -> IngestReport:
        """Add, update (and with ``prune`` remove) documents so the index matches the files."""
        lite = self.store.conn.lite
        if lite is not None:  # like any tool that writes a file: `--uri data/docs.db` in a new project
            with contextlib.suppress(OSError):  # opening the file then says precisely why (read-only, ...)
                lite.path.parent.mkdir(parents=True, exist_ok=True)
        self._check_model()
        kind: type[Ingestor] = Ingestor
        more: dict[str, object] = {}
        if self.settings.ray_address is not None:  # the same sync on Ray Data: askdocs/ingest_ray.py
            from askdocs.ingest_ray import RayIngestor

            kind, more = RayIngestor, {"settings": self.settings, "address": self.settings.ray_address}
        ingestor = kind(
            self.store,
            chunker=self.chunker,
            embedder=self.embedder,
            ensure_collection=self._ensure_collection,
            batch_size=max(self.settings.embed_batch_size * 4, 64),
            progress=progress,
            pdf_max_inflated=int(self.settings.pdf_max_inflated_mb * 2**20),
            max_file_bytes=int(self.settings.max_file_mb * 2**20),
            **more,
        )
        self.last_ingestor = ingestor
        try:
            return ingestor.run([os.fspath(p) for p in paths], prune=prune)
        finally:
            self.retriever.forget_names()  # a folder may now share a path with another

    def search_many(
        self, queries: Sequence[str], options: SearchOptions | None = None, /, **fields: Any
    ) -> list[list[Hit]]:
        """Search several queries at once: one embedding pass, batched Milvus calls.

        ``options`` (or its fields as keywords: ``k``, ``mode``, ``filter``, ``timings``) say how;
        ``k`` and ``mode`` default to the settings'.
        """
        opts = (options or SearchOptions()).replace(**fields)
        self.require_collection()
        self._check_model()
        s = self.settings
        queries = [self.search_query(q) for q in queries]
        return self.retriever.search(queries, opts.replace(k=opts.k or s.top_k, mode=opts.mode or s.search_mode))

    def search_query(self, question: str) -> str:
        """What to search for: a Chinese question over documents that are not Chinese, glossed into English
        (``query_translation``, askdocs/translate.py); every other question as it is."""
        mode = self.settings.query_translation
        if mode == "off" or not is_chinese(question):
            return question
        if mode == "auto":
            meta = self.meta() or {}
            if meta.get("analyzer") == "jieba" or not translate.available():  # Chinese documents: ask in Chinese
                return question
        return translate.translate(question)

    def search(self, query: str, options: SearchOptions | None = None, /, **fields: Any) -> list[Hit]:
        return self.search_many([query], options, **fields)[0]

    def documents(self) -> list[DocumentInfo]:
        """Every document, by name (``askdocs.identity``: a source two roots hold is shown with its root)."""
        states = self.store.document_states()
        shown = identity.names(states)
        out = [
            DocumentInfo(shown[key], st.title, st.chunks, st.root, any(st.complete(h) for h in st.versions), st.source)
            for key, st in states.items()
        ]
        return sorted(out, key=lambda d: (d.source, d.root))

    def delete(self, name: str) -> int:
        """Remove one document from the index; returns the chunks removed (0: no such document).

        ``name`` is the name ``documents`` and search results show, its bare source while no other root
        holds it, or the file's full path.  A bare source that two roots hold is refused
        (``AmbiguousNameError``) with the names of both, never guessed.
        """
        states = self.store.document_states()
        key = identity.pick(name, states)
        if key is None:
            return 0
        self.store.delete_source(*key)
        self.store.flush()
        self.retriever.forget_names()
        return states[key].chunks

    def reset(self) -> bool:
        """Drop the collection (e.g. to re-index with another embedding model)."""
        self._meta, self._model_checked = None, False
        self.retriever.forget_names()
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
        self._meta = None  # status looks afresh: another process may have created or dropped the collection
        meta = self.meta()
        if meta is None:
            return st
        states = self.store.document_states()
        st.exists = True
        st.model, st.dim, st.chunking = meta.get("model"), meta.get("dim"), meta.get("chunking")
        st.documents = len(states)
        st.chunks = sum(x.chunks for x in states.values())
        st.bm25 = self.store.supports_bm25
        st.analyzer = meta.get("analyzer", "standard") if st.bm25 else None
        if s.is_lite and st.chunks > LITE_CHUNK_LIMIT:
            st.warning = (
                f"{st.chunks:,} chunks is past the {LITE_CHUNK_LIMIT:,} up to which Milvus Lite was measured to answer "
                "a hybrid search in under 50 ms: serve this collection from a Milvus server and use --uri http://HOST:19530"
            )
        return st
