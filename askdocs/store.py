"""Store: the Milvus collection that holds chunks, through pymilvus's ``MilvusClient``.

The URI alone picks the backend, as in pymilvus: a ``*.db`` path is Milvus Lite,
an ``http(s)://`` address a server or cluster.  The collection records the
embedding model and dimension in its properties, so a mismatch is caught before
anything is written.  Sync state (which version of which document is stored,
and whether it is complete) is read back from the chunk rows themselves rather
than from a separate ledger that a crash could leave out of step.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from askdocs.errors import AskdocsError, ModelMismatchError, StoreError

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from askdocs.chunk import Chunk

log = logging.getLogger(__name__)

META_KEY = "askdocs.meta"
SCHEMA_VERSION = 1

#: Lucene's English stop words (what Milvus's "_english_" stands for), listed because Milvus Lite reads
#: only explicit lists.  They are the longest posting lists ("the" is in 82% of the PostgreSQL manual's
#: chunks): dropping them cut the postings a BM25 query walks to 22%, and they carry no ranking signal.
ENGLISH_STOP_WORDS = (  # noqa: SIM905 - one line of words reads better than 33 lines of strings
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with"
).split()
ANALYZER = {"tokenizer": "standard", "filter": ["lowercase", {"type": "stop", "stop_words": ENGLISH_STOP_WORDS}]}
OUTPUT_FIELDS = ["text", "source", "title", "section", "chunk_index", "start", "end", "search_text"]
STATE_FIELDS = ["source", "root", "title", "doc_hash", "n_chunks", "chunk_index"]
MAX_TEXT = 65535


_LITE_USERS: dict[str, int] = {}
_HELD = (
    "Milvus Lite file {uri} is already open in another process (Lite allows one). Stop that process, "
    "or share the file through a server: `milvus-lite server --host 127.0.0.1` and then "
    "--uri http://127.0.0.1:19530."
)


def _release_lite(path: str) -> None:
    """Stop this process's Milvus Lite server for ``path`` once no store here uses it.

    pymilvus's ``close()`` leaves the in-process Lite server (and its file lock) running until the
    process exits, so a closed ``Index`` would still keep every other process off the file.
    """
    _LITE_USERS[path] = _LITE_USERS.get(path, 1) - 1
    if _LITE_USERS[path] > 0:
        return
    del _LITE_USERS[path]
    try:
        from milvus_lite.server_manager import server_manager_instance
    except ImportError:  # another Lite implementation: it manages its own lifetime
        return
    server_manager_instance.release_server(path)


def literal(value: str) -> str:
    """A Milvus expression string literal; quotes, backslashes and control characters escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + escaped.replace("\t", "\\t") + '"'


@dataclass
class DocState:
    """What the collection holds for one source: chunk indexes per stored version."""

    source: str
    root: str = ""
    title: str = ""
    versions: dict[str, list[int]] = field(default_factory=dict)  # doc_hash -> chunk indexes seen
    expected: dict[str, int] = field(default_factory=dict)  # doc_hash -> n_chunks recorded

    def complete(self, doc_hash: str) -> bool:
        seen = self.versions.get(doc_hash, [])
        n = self.expected.get(doc_hash, -1)
        return len(seen) == n and sorted(seen) == list(range(n))

    @property
    def chunks(self) -> int:
        return sum(len(v) for v in self.versions.values())


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    source: str
    title: str
    section: str
    text: str
    chunk_index: int = 0
    start: int = 0
    end: int = 0
    search_text: str = ""  # what was embedded and BM25-indexed (context + text): the reranker reads it

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": self.score,
            "source": self.source,
            "title": self.title,
            "section": self.section,
            "text": self.text,
        }


def _bm25_capable(version: str) -> bool:
    """Milvus Lite 3.x and Milvus >= 2.5 run the BM25 function; 2.3/2.4 servers do not."""
    if version.startswith("milvus_lite") or version.startswith("milvus-lite"):
        return True
    m = re.search(r"(\d+)\.(\d+)", version)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (2, 5)


class MilvusStore:
    """One askdocs collection.  Connects lazily; every failure names the URI."""

    def __init__(
        self,
        uri: str,
        collection: str,
        token: str | None = None,
        index_type: str = "AUTOINDEX",
        metric_type: str = "COSINE",
    ) -> None:
        self.uri = uri
        self.collection = collection
        self.token = token
        self.index_type = index_type
        self.metric_type = metric_type
        self._client: MilvusClient | None = None
        self._loaded = False
        self._has_sparse: bool | None = None

    # ------------------------------------------------------------------ connection

    @property
    def client(self) -> MilvusClient:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self) -> MilvusClient:
        from pymilvus import MilvusClient

        # On Milvus Lite every query_iterator asks the in-process gRPC server for a timestamp it does not
        # implement; pymilvus then falls back to a client-side one.  Both sides log that harmless miss
        # (pymilvus a warning, grpc a traceback), so mute exactly those two loggers.
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # its RPC errors come back to us, explained
        if self.uri.endswith(".db"):
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            logging.getLogger("milvus_lite").setLevel(logging.CRITICAL)  # failures reach us, explained
        try:
            if self.uri.endswith(".db"):
                self._lite_precheck()
            client = MilvusClient(uri=self.uri, token=self.token or "")
            if self.uri.endswith(".db"):
                key = self.uri_key()
                _LITE_USERS[key] = _LITE_USERS.get(key, 0) + 1
            return client
        except AskdocsError:
            raise
        except Exception as exc:  # pymilvus raises several unrelated types here
            raise StoreError(self._explain(exc)) from None

    def _lite_precheck(self) -> None:
        """Say precisely why a Lite file cannot be opened: pymilvus reports every cause the same way."""
        import fcntl
        from pathlib import Path

        path = Path(self.uri).expanduser().absolute()
        if not path.parent.exists():
            raise StoreError(f"cannot open Milvus Lite at {self.uri}: folder {path.parent} does not exist")
        target = path if path.exists() else path.parent
        if not os.access(target, os.W_OK):
            raise StoreError(
                f"cannot open Milvus Lite at {self.uri}: {target} is not writable (read-only file system or "
                "permissions). Milvus Lite writes even to search; make it writable or copy the index elsewhere"
            )
        lock = path / "LOCK"
        if not lock.exists():
            return
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError as exc:
            raise StoreError(f"cannot open Milvus Lite at {self.uri}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.uri_key() in _LITE_USERS:  # this process already holds it: pymilvus shares the server
                return
            raise StoreError(_HELD.format(uri=self.uri)) from None
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def uri_key(self) -> str:
        return os.path.abspath(os.path.expanduser(self.uri))

    def _explain(self, exc: Exception) -> str:
        text = str(exc)
        low = text.lower()
        if "no space left" in low:
            return (
                f"disk full writing to Milvus at {self.uri}: free some space and run the ingest again; "
                "documents written so far are complete, the rest will be added"
            )
        if "read-only file system" in low:
            return f"Milvus at {self.uri} is on a read-only file system: make it writable and run again"
        if self.uri.endswith(".db") and ("lock" in low or "open local milvus failed" in low):
            return _HELD.format(uri=self.uri)
        detail = getattr(exc, "message", None) or text  # MilvusException's own words, without its repr
        if "fail connecting" in text.lower() or "unavailable" in text.lower():
            return f"cannot reach Milvus at {self.uri}: {detail}. Is the server running, and is the URI right?"
        return f"Milvus at {self.uri}: {detail}"

    def close(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None
                self._loaded = False
                if self.uri.endswith(".db"):
                    _release_lite(self.uri_key())

    # ------------------------------------------------------------------ collection

    def exists(self) -> bool:
        return bool(self._call(self.client.has_collection, self.collection))

    def list_collections(self) -> list[str]:
        return list(self._call(self.client.list_collections))

    def meta(self) -> dict[str, Any] | None:
        """The askdocs metadata recorded on the collection, or None if it does not exist."""
        if not self.exists():
            return None
        desc = self._call(self.client.describe_collection, self.collection)
        self._has_sparse = any(f["name"] == "sparse" for f in desc["fields"])
        raw = (desc.get("properties") or {}).get(META_KEY)
        if raw is None:
            raise StoreError(
                f"collection {self.collection!r} at {self.uri} was not created by askdocs; "
                "choose another with --collection"
            )
        return json.loads(raw)

    @property
    def supports_bm25(self) -> bool:
        if self._has_sparse is None:
            self.meta()
        return bool(self._has_sparse)

    def check_model(self, model: str, dim: int | None = None) -> None:
        meta = self.meta()
        if meta is None:
            return
        if meta["model"] != model or (dim is not None and meta["dim"] != dim):
            raise ModelMismatchError(
                f"collection {self.collection!r} was built with embedding model {meta['model']} "
                f"({meta['dim']} dims), not {model}{f' ({dim} dims)' if dim else ''}. Search it with "
                f"--embed-model {meta['model']}, or re-index with the new model: "
                f"`askdocs reset --collection {self.collection}` then `askdocs ingest ...` "
                "(or ingest into another --collection)."
            )

    def create(self, model: str, dim: int, extra: dict[str, Any] | None = None) -> None:
        """Create the collection (explicit schema, BM25 where the server has it) if absent."""
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        if self.exists():
            self.check_model(model, dim)
            return
        version = str(self._call(self.client.get_server_version))
        bm25 = _bm25_capable(version)
        if not bm25:
            log.warning(
                "Milvus %s at %s has no BM25 function: the collection is dense-only (bm25 and hybrid search "
                "unavailable). Milvus >= 2.5 or Milvus Lite 3 supports them.",
                version,
                self.uri,
            )
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT)
        if bm25:
            schema.add_field(
                "search_text", DataType.VARCHAR, max_length=MAX_TEXT, enable_analyzer=True, analyzer_params=ANALYZER
            )
        else:
            schema.add_field("search_text", DataType.VARCHAR, max_length=MAX_TEXT)
        schema.add_field("source", DataType.VARCHAR, max_length=4096)
        schema.add_field("root", DataType.VARCHAR, max_length=4096)
        schema.add_field("title", DataType.VARCHAR, max_length=1024)
        schema.add_field("section", DataType.VARCHAR, max_length=2048)
        schema.add_field("chunk_index", DataType.INT64)
        schema.add_field("n_chunks", DataType.INT64)
        schema.add_field("start", DataType.INT64)
        schema.add_field("end", DataType.INT64)
        schema.add_field("doc_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = self.client.prepare_index_params()
        index.add_index("vector", index_type=self.index_type, metric_type=self.metric_type)
        if bm25:
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_function(
                Function(
                    name="bm25",
                    function_type=FunctionType.BM25,
                    input_field_names=["search_text"],
                    output_field_names=["sparse"],
                )
            )
            index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        meta = {"model": model, "dim": dim, "schema": SCHEMA_VERSION, **(extra or {})}
        self._call(
            self.client.create_collection,
            self.collection,
            schema=schema,
            index_params=index,
            properties={META_KEY: json.dumps(meta)},
        )
        self._has_sparse = bm25
        self._loaded = True

    def drop(self) -> bool:
        if not self.exists():
            return False
        self._call(self.client.drop_collection, self.collection)
        self._loaded = False
        return True

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._call(self.client.load_collection, self.collection)
            self._loaded = True

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except AskdocsError:
            raise
        except Exception as exc:
            raise StoreError(self._explain(exc)) from None

    # ------------------------------------------------------------------ writes

    def insert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        rows = [
            {
                "id": c.id,
                "text": c.text[:MAX_TEXT],
                "search_text": c.search_text[:MAX_TEXT],
                "source": c.source,
                "root": c.root,
                "title": c.title[:1024],
                "section": c.section[:2048],
                "chunk_index": c.index,
                "n_chunks": c.n_chunks,
                "start": c.start,
                "end": c.end,
                "doc_hash": c.doc_hash,
                "vector": v,
            }
            for c, v in zip(chunks, vectors, strict=True)
        ]
        if rows:
            self._ensure_loaded()
            self._call(self.client.insert, self.collection, rows)

    def delete(self, expr: str) -> None:
        self._ensure_loaded()
        self._call(self.client.delete, self.collection, filter=expr)

    def delete_source(self, source: str, keep_hash: str | None = None, only_hash: str | None = None) -> None:
        expr = f"source == {literal(source)}"
        if keep_hash is not None:
            expr += f" and doc_hash != {literal(keep_hash)}"
        if only_hash is not None:
            expr += f" and doc_hash == {literal(only_hash)}"
        self.delete(expr)

    def flush(self) -> None:
        self._call(self.client.flush, self.collection)

    # ------------------------------------------------------------------ reads

    def document_states(self) -> dict[str, DocState]:
        """Every stored chunk's (source, version, index), grouped by source."""
        states: dict[str, DocState] = {}
        if not self.exists():
            return states
        self._ensure_loaded()
        iterator = self._call(
            self.client.query_iterator,
            self.collection,
            batch_size=8192,
            filter="",
            output_fields=STATE_FIELDS,
        )
        try:
            while True:
                batch = self._call(iterator.next)
                if not batch:
                    break
                for row in batch:
                    st = states.get(row["source"])
                    if st is None:
                        st = states[row["source"]] = DocState(row["source"], row["root"], row["title"])
                    st.versions.setdefault(row["doc_hash"], []).append(int(row["chunk_index"]))
                    st.expected[row["doc_hash"]] = int(row["n_chunks"])
        finally:
            iterator.close()
        return states

    def count(self) -> int:
        if not self.exists():
            return 0
        self._ensure_loaded()
        res = self._call(self.client.query, self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"]) if res else 0

    def _hits(self, results: Any, bm25: bool = False) -> list[list[Hit]]:
        out: list[list[Hit]] = []
        for per_query in results:
            hits = []
            for r in per_query:
                e = r["entity"]
                score = float(r["distance"])
                hits.append(
                    Hit(
                        id=str(r["id"]),
                        score=abs(score) if bm25 else score,  # Milvus Lite reports BM25 as negative distance
                        source=e["source"],
                        title=e["title"],
                        section=e["section"],
                        text=e["text"],
                        chunk_index=int(e["chunk_index"]),
                        start=int(e["start"]),
                        end=int(e["end"]),
                        search_text=e.get("search_text") or "",
                    )
                )
            out.append(hits)
        return out

    def search_dense(self, vectors: np.ndarray, k: int, expr: str = "") -> list[list[Hit]]:
        self._ensure_loaded()
        res = self._call(
            self.client.search,
            self.collection,
            data=[v for v in vectors],
            anns_field="vector",
            limit=k,
            filter=expr,
            output_fields=OUTPUT_FIELDS,
            search_params={"metric_type": self.metric_type},
        )
        return self._hits(res)

    def _require_bm25(self) -> None:
        if not self.supports_bm25:
            raise AskdocsError(
                f"collection {self.collection!r} at {self.uri} has no BM25 index (Milvus < 2.5): use --mode dense"
            )

    def search_bm25(self, texts: Sequence[str], k: int, expr: str = "") -> list[list[Hit]]:
        self._require_bm25()
        self._ensure_loaded()
        res = self._call(
            self.client.search,
            self.collection,
            data=list(texts),
            anns_field="sparse",
            limit=k,
            filter=expr,
            output_fields=OUTPUT_FIELDS,
            search_params={"metric_type": "BM25"},
        )
        return self._hits(res, bm25=True)

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
        """Dense and BM25 candidates fused by Milvus: Reciprocal Rank Fusion, or weighted scores."""
        from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

        ranker = RRFRanker(rrf_k) if dense_weight is None else WeightedRanker(dense_weight, 1.0 - dense_weight)

        self._require_bm25()
        self._ensure_loaded()
        limit = max(k, candidates)
        out: list[list[Hit]] = []
        vecs = list(vectors)
        for i in range(0, len(vecs), 64):  # batched: one hybrid_search call fuses each query's lists apart
            reqs = [
                AnnSearchRequest(
                    vecs[i : i + 64], "vector", {"metric_type": self.metric_type}, limit, expr=expr or None
                ),
                AnnSearchRequest(list(texts[i : i + 64]), "sparse", {"metric_type": "BM25"}, limit, expr=expr or None),
            ]
            res = self._call(
                self.client.hybrid_search,
                self.collection,
                reqs,
                ranker,
                limit=k,
                output_fields=OUTPUT_FIELDS,
            )
            out.extend(self._hits(res))
        return out
