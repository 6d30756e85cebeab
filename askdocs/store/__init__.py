"""The store: chunks in a Milvus collection, through pymilvus's ``MilvusClient``.

Split by role: ``connection`` (URI, the Milvus Lite lock, errors explained, retries), ``schema`` (fields,
BM25 function, indexes, properties, model check, cached metadata), ``writes`` (rows and sync state),
``search`` (dense, BM25, hybrid); ``collection.MilvusStore`` puts them behind one object.
"""

from askdocs.store.collection import MilvusStore
from askdocs.store.connection import LITE_CHUNK_LIMIT, is_lite, lite_engine
from askdocs.store.schema import ANALYZERS, ENGLISH_STOP_WORDS, META_KEY, OUTPUT_FIELDS, STATE_FIELDS
from askdocs.store.search import Hit
from askdocs.store.writes import DocState, literal

__all__ = [
    "ANALYZERS",
    "ENGLISH_STOP_WORDS",
    "LITE_CHUNK_LIMIT",
    "META_KEY",
    "OUTPUT_FIELDS",
    "STATE_FIELDS",
    "DocState",
    "Hit",
    "MilvusStore",
    "is_lite",
    "lite_engine",
    "literal",
]
