"""Writes and sync state: chunk rows in, documents out, and what the collection holds per document.

Sync state (which version of which document is stored, and whether it is complete) is read back from the chunk
rows themselves rather than from a separate ledger that a crash could leave out of step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from askdocs.identity import DocKey
from askdocs.store.connection import Connection
from askdocs.store.schema import MAX_TEXT, STATE_FIELDS, Schema

if TYPE_CHECKING:
    from askdocs.chunk import Chunk


def literal(value: str) -> str:
    """A Milvus expression string literal; quotes, backslashes and control characters escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + escaped.replace("\t", "\\t") + '"'


@dataclass
class DocState:
    """What the collection holds for one document (a source under a root): chunk indexes per stored version."""

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


class Writer:
    """Inserts, deletes, flushes and reads back sync state of one collection."""

    def __init__(self, conn: Connection, schema: Schema) -> None:
        self.conn = conn
        self.schema = schema
        self.collection = schema.collection

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
        if not rows:
            return

        def op(retry: bool) -> None:
            # A retried insert may repeat one that reached the server before the connection broke;
            # an upsert of the same deterministic ids cannot leave duplicates behind.
            self.schema.ensure_loaded()
            client = self.conn.connected()
            (client.upsert if retry else client.insert)(self.collection, rows)

        self.conn.retrying(op)

    def delete(self, expr: str) -> None:
        def op(retry: bool) -> None:
            self.schema.ensure_loaded()
            self.conn.connected().delete(self.collection, filter=expr)

        self.conn.retrying(op)

    def delete_source(self, root: str, source: str, keep_hash: str | None = None, only_hash: str | None = None) -> None:
        """Delete one document's rows (or some versions of them); a document is its (root, source)."""
        expr = f"root == {literal(root)} and source == {literal(source)}"
        if keep_hash is not None:
            expr += f" and doc_hash != {literal(keep_hash)}"
        if only_hash is not None:
            expr += f" and doc_hash == {literal(only_hash)}"
        self.delete(expr)

    def flush(self) -> None:
        self.conn.call("flush", self.collection)

    def document_states(self) -> dict[DocKey, DocState]:
        """Every stored chunk's (root, source, version, index), grouped by document: (root, source)."""
        if not self.schema.exists():
            return {}

        def op(retry: bool) -> dict[DocKey, DocState]:  # a retry reads everything again
            states: dict[DocKey, DocState] = {}
            self.schema.ensure_loaded()
            iterator = self.conn.connected().query_iterator(
                self.collection, batch_size=8192, filter="", output_fields=STATE_FIELDS
            )
            try:
                while batch := iterator.next():
                    for row in batch:
                        key = (row["root"], row["source"])
                        st = states.get(key)
                        if st is None:
                            st = states[key] = DocState(row["source"], row["root"], row["title"])
                        st.versions.setdefault(row["doc_hash"], []).append(int(row["chunk_index"]))
                        st.expected[row["doc_hash"]] = int(row["n_chunks"])
            finally:
                with contextlib.suppress(Exception):  # a broken connection cannot close it either
                    iterator.close()
            return states

        return self.conn.retrying(op)

    def roots_of(self, sources: Sequence[str]) -> dict[str, set[str]]:
        """The roots that hold each of ``sources``: one query on the documents' first chunks.

        Search results are named by it (``askdocs.identity``): a source held by two roots is shown with
        its root.  Asking for the hits' sources only keeps it one small query, whatever the collection's size.
        """
        wanted = sorted(set(sources))
        if not wanted:
            return {}
        expr = f"source in [{', '.join(literal(s) for s in wanted)}] and chunk_index == 0"

        def op(retry: bool) -> list[dict]:
            self.schema.ensure_loaded()
            return self.conn.connected().query(self.collection, filter=expr, output_fields=["source", "root"])

        out: dict[str, set[str]] = {s: set() for s in wanted}
        for row in self.conn.retrying(op):
            out[row["source"]].add(row["root"])
        return out

    def count(self) -> int:
        if not self.schema.exists():
            return 0

        def op(retry: bool) -> int:
            self.schema.ensure_loaded()
            res = self.conn.connected().query(self.collection, filter="", output_fields=["count(*)"])
            return int(res[0]["count(*)"]) if res else 0

        return self.conn.retrying(op)
