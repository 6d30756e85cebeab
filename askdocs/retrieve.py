"""Retrieve: top-k chunks for one or many questions, dense, BM25 or hybrid.

Queries are embedded together (one forward pass for a whole batch) and the
BM25 side runs inside Milvus, so a BM25-only search never loads the embedder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, model_validator

from askdocs.embed import Embedder
from askdocs.store import Hit, MilvusStore, literal

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


# --------------------------------------------------------------------------- structured filters

FilterField = Literal["source", "title", "section", "root", "chunk_index"]
FilterOp = Literal["==", "!=", "in", "not in", "prefix", "contains", "<", "<=", ">", ">="]
_STRING_OPS = {"==", "!=", "in", "not in", "prefix", "contains"}
_NUMBER_OPS = {"==", "!=", "in", "not in", "<", "<=", ">", ">="}


class Condition(BaseModel):
    """One filter condition from an untrusted client, e.g. ``{"field": "source", "op": "prefix", "value": "faq/"}``.

    Clients never send expression text: the field and operator come from closed sets and values are
    escaped as literals, so no value can close a string and append its own clause.
    """

    model_config = ConfigDict(extra="forbid")

    field: FilterField
    op: FilterOp
    value: StrictStr | StrictInt | list[StrictStr] | list[StrictInt]

    @model_validator(mode="after")
    def _check(self) -> Condition:
        numeric = self.field == "chunk_index"
        allowed = _NUMBER_OPS if numeric else _STRING_OPS
        if self.op not in allowed:
            raise ValueError(f"operator {self.op!r} does not apply to {self.field}")
        many = self.op in ("in", "not in")
        if many != isinstance(self.value, list):
            raise ValueError(f"operator {self.op!r} takes {'a list' if many else 'one value'}")
        values = self.value if isinstance(self.value, list) else [self.value]
        if many and not 1 <= len(values) <= 100:
            raise ValueError("a list takes 1 to 100 values")
        if any(isinstance(v, int) != numeric for v in values):
            raise ValueError(f"{self.field} takes {'integers' if numeric else 'strings'}")
        if self.op in ("prefix", "contains") and "%" in str(self.value):
            raise ValueError("'%' is not allowed in prefix/contains values")
        return self

    def expression(self) -> str:
        def lit(v: str | int) -> str:
            return str(int(v)) if isinstance(v, int) else literal(v)

        if self.op in ("in", "not in"):
            items = ", ".join(lit(v) for v in self.value)  # type: ignore[union-attr]
            return f"{self.field} {self.op} [{items}]"
        if self.op == "prefix":
            return f"{self.field} like {literal(str(self.value) + '%')}"
        if self.op == "contains":
            return f"{self.field} like {literal('%' + str(self.value) + '%')}"
        return f"{self.field} {self.op} {lit(self.value)}"  # type: ignore[arg-type]


def filter_expression(conditions: Sequence[Condition]) -> str:
    """All conditions joined with ``and``; the empty list filters nothing."""
    return " and ".join(f"({c.expression()})" for c in conditions)
