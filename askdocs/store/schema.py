"""The collection's shape: fields, the BM25 function and analyzer, indexes, properties, and the model check.

The collection records the embedding model and dimension in its properties, so a mismatch is caught before
anything is written.  What ``describe_collection`` says is cached (``Schema.info``): a search needs to know
whether the collection has BM25, and asking Milvus each time cost three engine calls per query.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from askdocs.errors import AskdocsError, ModelMismatchError, StoreError
from askdocs.store.connection import Connection

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
#: Chinese function words and question words: in "HNSW的参数是什么意思" only HNSW and 参数 carry meaning.
CHINESE_STOP_WORDS = (  # noqa: SIM905
    "的 了 着 过 和 与 及 或 而 是 在 有 也 都 就 对 中 为 以 之 其 这 那 这个 那个 这些 那些 我 你 他 她 它 我们 "
    "你们 他们 吗 呢 吧 啊 呀 如何 怎么 怎样 怎么样 什么 哪些 哪个 哪里 为什么 是否 能否 可以 能 会 要 把 被 将 从 "
    "到 给 让 一个 一种 一些 进行 使用 用 时 时候 意思 请 问 多少 大约 大概"
).split()
#: The jieba tokenizer, unlike the standard one, also emits the spaces and punctuation between words.
PUNCTUATION = list(" \t\n\r!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + list("，。、：；！？（）【】「」『』《》“”‘’…—·")
ANALYZERS: dict[str, dict[str, Any]] = {
    # Unicode word boundaries: right for English and other space-separated scripts; a run of Chinese
    # characters is one token, so Chinese text and questions find next to nothing.
    "standard": {"tokenizer": "standard", "filter": ["lowercase", {"type": "stop", "stop_words": ENGLISH_STOP_WORDS}]},
    # jieba splits Chinese into words and English on spaces and punctuation, as the standard tokenizer
    # does: one analyzer serves Chinese documents, English documents, and Chinese questions about
    # English documents (whose identifiers, HNSW or efConstruction, it still matches).
    "jieba": {
        "tokenizer": "jieba",
        "filter": [
            "lowercase",
            {"type": "stop", "stop_words": ENGLISH_STOP_WORDS + CHINESE_STOP_WORDS + PUNCTUATION},
        ],
    },
}
OUTPUT_FIELDS = ["text", "source", "root", "title", "section", "chunk_index", "start", "end", "search_text"]
STATE_FIELDS = ["source", "root", "title", "doc_hash", "n_chunks", "chunk_index"]
MAX_TEXT = 65535


def bm25_capable(version: str) -> bool:
    """Milvus Lite and Milvus >= 2.5 run the BM25 function; 2.3/2.4 servers do not."""
    if version.startswith("milvus_lite") or version.startswith("milvus-lite"):
        return True
    m = re.search(r"(\d+)\.(\d+)", version)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (2, 5)


@dataclass(frozen=True)
class CollectionInfo:
    """What askdocs needs to know of an existing collection."""

    meta: dict[str, Any]
    has_sparse: bool


class Schema:
    """Create, describe (once), check and drop one askdocs collection."""

    def __init__(self, conn: Connection, collection: str, index_type: str, metric_type: str) -> None:
        self.conn = conn
        self.collection = collection
        self.index_type = index_type
        self.metric_type = metric_type
        self._info: CollectionInfo | None = None
        self._loaded_generation = -1  # the connection generation the collection was loaded on

    def exists(self) -> bool:
        return self._info is not None or bool(self.conn.call("has_collection", self.collection))

    def info(self) -> CollectionInfo | None:
        """The collection's metadata and capabilities (cached), or None if it does not exist."""
        if self._info is not None:
            return self._info
        if not self.conn.call("has_collection", self.collection):
            return None
        desc = self.conn.call("describe_collection", self.collection)
        raw = (desc.get("properties") or {}).get(META_KEY)
        description = str(desc.get("description") or "")
        if raw is None and description.startswith(META_KEY + " "):
            raw = description[len(META_KEY) + 1 :]
        if raw is None:
            raise StoreError(
                f"collection {self.collection!r} at {self.conn.uri} was not created by askdocs; "
                "choose another with --collection"
            )
        self._info = CollectionInfo(json.loads(raw), any(f["name"] == "sparse" for f in desc["fields"]))
        return self._info

    def forget(self) -> None:
        """Drop the cache: another process may have dropped or re-created the collection."""
        self._info = None

    def ensure_loaded(self) -> None:
        """Load the collection once per connection (a reconnect after a server restart loads it again)."""
        client = self.conn.connected()
        if self._loaded_generation != self.conn.generation:
            client.load_collection(self.collection)
            self._loaded_generation = self.conn.generation

    def require_bm25(self) -> None:
        info = self.info()
        if info is None or not info.has_sparse:
            raise AskdocsError(
                f"collection {self.collection!r} at {self.conn.uri} has no BM25 index (Milvus < 2.5): use --mode dense"
            )

    def check_model(self, model: str, dim: int | None = None) -> None:
        info = self.info()
        if info is None:
            return
        meta = info.meta
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
        version = self._server_version()
        bm25 = bm25_capable(version)
        if not bm25:
            log.warning(
                "Milvus %s at %s has no BM25 function: the collection is dense-only (bm25 and hybrid search "
                "unavailable). Milvus >= 2.5 or Milvus Lite supports them.",
                version,
                self.conn.uri,
            )
        meta = {"model": model, "dim": dim, "schema": SCHEMA_VERSION, **(extra or {})}
        analyzer = ANALYZERS[meta.setdefault("analyzer", "standard")] if bm25 else None
        if not bm25:
            meta.pop("analyzer", None)
        # Also in the description: Milvus Lite 2.5 accepts collection properties but does not keep them.
        schema = MilvusClient.create_schema(
            auto_id=False, enable_dynamic_field=False, description=f"{META_KEY} {json.dumps(meta)}"
        )
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT)
        if bm25:
            schema.add_field(
                "search_text", DataType.VARCHAR, max_length=MAX_TEXT, enable_analyzer=True, analyzer_params=analyzer
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
        index = MilvusClient.prepare_index_params()
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

        def op(retry: bool) -> None:
            client = self.conn.connected()
            if retry and client.has_collection(self.collection):  # the lost attempt got that far
                if len(client.list_indexes(self.collection)) < (2 if bm25 else 1):
                    client.create_index(self.collection, index)  # the same index again is accepted
                client.load_collection(self.collection)
                return
            client.create_collection(
                self.collection, schema=schema, index_params=index, properties={META_KEY: json.dumps(meta)}
            )

        self.conn.retrying(op)
        self._info = CollectionInfo(meta, bm25)
        self._loaded_generation = self.conn.generation  # create_collection with indexes loads it

    def _server_version(self) -> str:
        """The server's version; Milvus Lite (embedded, or its server mode) does not implement GetVersion."""
        if self.conn.lite is not None:
            return "milvus-lite"
        try:
            return str(self.conn.call("get_server_version"))
        except StoreError as exc:
            if "unimplemented" in str(exc).lower():
                return "milvus-lite (server mode)"
            raise

    def drop(self) -> bool:
        self.forget()
        if not self.exists():
            return False
        self.conn.call("drop_collection", self.collection)
        self._loaded_generation = -1
        return True
