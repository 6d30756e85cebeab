"""Retrieve: top-k chunks for one or many questions, dense, BM25 or hybrid.

Queries are embedded together (one forward pass for a whole batch) and the
BM25 side runs inside Milvus, so a BM25-only search never loads the embedder.

An optional cross-encoder reranks the top candidates of any mode: it reads query and passage
together, which bi-encoder and BM25 scores cannot, at the price of one model pass per
(query, candidate) pair, so it only ever sees ``rerank_candidates`` hits per query.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, model_validator

from askdocs import identity
from askdocs.chunk import search_text
from askdocs.config import SEARCH_MODES, SearchMode
from askdocs.embed import Embedder
from askdocs.errors import BadInputError
from askdocs.store import Hit, MilvusStore, literal

log = logging.getLogger(__name__)

#: Seconds a search remembers which folders hold a source (the names it shows; ``Retriever._roots_of``).
NAME_TTL = 10.0


@dataclasses.dataclass
class SearchOptions:
    """What a search asks for besides its queries, carried whole from the CLI or the server to the retriever.

    ``k`` and ``mode`` left None take the settings' defaults (``Index`` fills them in); ``filter`` is a
    Milvus expression over the chunks; ``timings``, when given, receives seconds per stage.
    """

    k: int | None = None
    mode: SearchMode | None = None
    filter: str = ""
    timings: dict[str, float] | None = None
    whole_lists: bool = False
    """Continue a hit that ends announcing something ("... the following forms of partitioning:") into the
    chunks after it (``announces``, ``continued``): answers want the list; ``askdocs search`` shows chunks as stored."""

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in SEARCH_MODES:
            raise BadInputError(f"unknown search mode {self.mode!r}; choose one of {', '.join(SEARCH_MODES)}")

    def replace(self, **changes: Any) -> SearchOptions:
        return dataclasses.replace(self, **changes)


#: A hit that ends announcing a list is continued by up to this many following chunks and characters.
CONTINUE_CHUNKS = 3
CONTINUE_CHARS = 1000
TERM_CHARS = 80
"""A line this short, alone and without final punctuation, is a term (a heading-like name a list explains)."""
SENTENCE_ENDS = (".", "?", "!", ";", "。", "？", "！", "；")


def announces(text: str) -> bool:
    """Whether a chunk ends announcing what the next chunk holds: its last paragraph ends with a colon ("...
    the following forms of partitioning:"), or is the first short term or item right after such a line
    ("Range Partitioning").  The chunker cut the list off there; the reader needs the rest of it."""
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if not paras:
        return False
    last = paras[-1]
    if last.endswith((":", "：")):
        return True
    return (
        len(paras) >= 2
        and paras[-2].endswith((":", "："))
        and len(last) <= TERM_CHARS
        and "\n" not in last
        and not last.endswith(SENTENCE_ENDS)
    )


def continued(hit: Hit, following: Sequence[Hit]) -> Hit:
    """``hit`` with the text of the chunks after it appended, up to ``CONTINUE_CHARS`` and not past a heading.

    Chunks overlap; what each adds is the text after the previous one's end.  A chunk whose overlap does not
    match (a document changed between ingests) ends the continuation: nothing is ever repeated or guessed."""
    text, end = hit.text, hit.end
    added = 0
    for nxt in following:
        overlap = end - nxt.start
        if overlap < 0 or overlap > len(nxt.text) or not text.endswith(nxt.text[:overlap]):
            break
        more = nxt.text[overlap:]
        heading = re.search(r"(?m)^#{1,6} ", more)
        cut = heading.start() if heading else len(more)
        cut = min(cut, CONTINUE_CHARS - added)
        text += more[:cut]
        added += cut
        end = nxt.start + overlap + cut
        if cut < len(more):
            break
    return dataclasses.replace(hit, text=text.rstrip(), end=end) if added else hit


def passage(hit: Hit) -> str:
    """What a reranker reads: exactly the text that was embedded for the hit (context, then the chunk)."""
    return hit.search_text or search_text(hit.title, hit.section, hit.text)


class Reranker:
    """A sentence-transformers ``CrossEncoder``, loaded on first use (model name or local path)."""

    def __init__(self, model: str, device: str | None = None, batch_size: int = 32) -> None:
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None

    def load(self) -> Any:
        """Load the model now (``Index.warm_up``), not on the first query."""
        if self._model is None:
            from sentence_transformers import CrossEncoder

            self._model = CrossEncoder(self.model_name, device=self.device)
        return self._model

    def rerank(self, queries: Sequence[str], hits: Sequence[Sequence[Hit]], k: int) -> list[list[Hit]]:
        """Each query's hits rescored by the cross-encoder (its score replaces the fused one), best ``k`` kept."""
        pairs = [(q, passage(h)) for q, hs in zip(queries, hits, strict=True) for h in hs]
        if not pairs:
            return [[] for _ in hits]
        scores = self.load().predict(pairs, batch_size=self.batch_size, show_progress_bar=False)
        out: list[list[Hit]] = []
        i = 0
        for hs in hits:
            scored = [dataclasses.replace(h, score=float(s)) for h, s in zip(hs, scores[i : i + len(hs)], strict=True)]
            i += len(hs)
            scored.sort(key=lambda h: -h.score)  # stable: ties keep the first-stage order
            out.append(scored[:k])
        return out


class Retriever:
    def __init__(
        self,
        store: MilvusStore,
        embedder: Callable[[], Embedder],
        rrf_k: int = 60,
        candidates: int = 50,
        dense_weight: float | None = None,
        reranker: Reranker | None = None,
        rerank_candidates: int = 20,
    ) -> None:
        """``dense_weight`` None fuses by RRF; a number fuses normalised scores with that dense share.

        With a ``reranker``, each query's top ``max(k, rerank_candidates)`` hits of the chosen mode are
        rescored by it and the best ``k`` returned.
        """
        self.store = store
        self._embedder = embedder
        self.rrf_k = rrf_k
        self.candidates = candidates
        self.dense_weight = dense_weight
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates
        self._warned = False
        self._roots: dict[str, tuple[float, set[str]]] = {}  # source -> (when read, roots holding it)

    def search(self, queries: Sequence[str], options: SearchOptions) -> list[list[Hit]]:
        """Top-``k`` hits per query (``k`` and ``mode`` must be set); ``options.timings`` (when given)
        receives seconds spent in ``embed`` and ``search`` (and ``rerank`` with a reranker)."""
        k, mode, expr, timings = options.k, options.mode, options.filter, options.timings
        if k is None or mode is None:
            raise ValueError("Retriever.search needs k and mode; Index.search_many fills in the defaults")
        if self.reranker is None or not queries:
            hits = self._search(queries, k, mode, expr, timings)
        else:
            first = self._search(queries, max(k, self.rerank_candidates), mode, expr, timings)
            start = time.perf_counter()
            hits = self.reranker.rerank(queries, first, k)
            if timings is not None:
                timings["rerank"] = timings.get("rerank", 0.0) + time.perf_counter() - start
        if options.whole_lists:
            hits = self._continue_announced(hits, timings)
        return self._named(hits, timings)

    def _continue_announced(self, hits: list[list[Hit]], timings: dict[str, float] | None) -> list[list[Hit]]:
        """Each hit that ``announces`` a list, continued into the chunks after it (one small query per such hit,
        before the hits are renamed: the query needs the stored source).  A hit whose next chunk is itself
        among the hits is left alone: the reader has that chunk already."""
        start = time.perf_counter()
        out = []
        for hs in hits:
            have = {(h.root, h.source, h.chunk_index) for h in hs}
            out.append(
                [
                    continued(h, self.store.following(h, CONTINUE_CHUNKS))
                    if announces(h.text) and (h.root, h.source, h.chunk_index + 1) not in have
                    else h
                    for h in hs
                ]
            )
        if timings is not None:
            timings["search"] = timings.get("search", 0.0) + time.perf_counter() - start
        return out

    def _roots_of(self, sources: Iterable[str]) -> dict[str, set[str]]:
        """``store.roots_of``, remembered for ``NAME_TTL`` seconds: the query filters on ``source`` over the
        whole collection and cost 4-5 ms of a 10 ms hybrid search at 22.5k chunks, on every search.  A name
        changes only when another folder ingests the same path; this process's own ingests and deletes
        clear the memory (``forget_names``), another process's show within ``NAME_TTL``."""
        now = time.monotonic()
        out: dict[str, set[str]] = {}
        stale = []
        for src in set(sources):
            entry = self._roots.get(src)  # one read: another thread may forget_names() meanwhile
            if entry is None or now - entry[0] > NAME_TTL:
                stale.append(src)
            else:
                out[src] = entry[1]
        if stale:
            found = self.store.roots_of(sorted(stale))
            for src in stale:
                out[src] = set(found.get(src, ()))
                self._roots[src] = (now, out[src])
        return out

    def forget_names(self) -> None:
        self._roots.clear()

    def _named(self, hits: list[list[Hit]], timings: dict[str, float] | None) -> list[list[Hit]]:
        """Hits whose source another root holds too get the name that tells them apart (``askdocs.identity``).

        One small query for the whole batch (two where a source is shared); otherwise the hits come back as
        they were.
        """
        sources = {h.source for hs in hits for h in hs}
        if not sources:
            return hits
        start = time.perf_counter()
        keys = {(r, s) for s, rs in self._roots_of(sources).items() for r in rs}
        keys |= {(h.root, h.source) for hs in hits for h in hs}
        if maybe := identity.candidates(keys):  # some source is shared: which longer names are taken
            taken = {s for s, rs in self._roots_of(maybe).items() if rs}
            shown = identity.names(keys, taken)
            hits = [[dataclasses.replace(h, source=shown[(h.root, h.source)]) for h in hs] for hs in hits]
        if timings is not None:
            timings["search"] = timings.get("search", 0.0) + time.perf_counter() - start
        return hits

    def _search(
        self,
        queries: Sequence[str],
        k: int,
        mode: str,
        expr: str,
        timings: dict[str, float] | None,
    ) -> list[list[Hit]]:
        t = timings if timings is not None else {}
        t.setdefault("embed", 0.0)
        t.setdefault("search", 0.0)
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


#: LIKE wildcards.  Milvus 2.5's expression grammar has no escape for them (``\_`` is a syntax error in a
#: string literal, and an escaped backslash before ``_`` does not make it literal in Milvus Lite 2.5.1), so a
#: value that holds one cannot go into a LIKE pattern without matching other names: ``team_a/`` would
#: reach ``teamXa/``, another tenant's folder.
_WILDCARDS = frozenset("_%")


def _prefix_range(field: str, value: str) -> str:
    """``field`` starts with ``value``, as a string range: exact for every character, wildcards included.

    The strings that start with ``value`` are those from ``value`` up to (not including) ``value`` with its
    last character incremented; Milvus compares VARCHAR byte-wise, and UTF-8 keeps code-point order.
    """
    upper = value[:-1] + chr(ord(value[-1]) + 1)
    return f"{field} >= {literal(value)} and {field} < {literal(upper)}"


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
        if self.op == "prefix" and not self.value:
            raise ValueError("prefix takes a non-empty value")
        if self.op == "contains" and (_WILDCARDS | {"\\"}) & set(str(self.value)):
            raise ValueError("contains cannot match _, % or a backslash literally in Milvus; use prefix or ==")
        return self

    def expression(self) -> str:
        def lit(v: str | int) -> str:
            return str(int(v)) if isinstance(v, int) else literal(v)

        if self.op in ("in", "not in"):
            items = ", ".join(lit(v) for v in self.value)  # type: ignore[union-attr]
            return f"{self.field} {self.op} [{items}]"
        if self.op == "prefix":
            value = str(self.value)
            if (_WILDCARDS | {"\\"}) & set(value) or ord(value[-1]) >= 0x10FFFF:
                return _prefix_range(self.field, value)
            return f"{self.field} like {literal(value + '%')}"
        if self.op == "contains":
            return f"{self.field} like {literal('%' + str(self.value) + '%')}"
        return f"{self.field} {self.op} {lit(self.value)}"  # type: ignore[arg-type]


def filter_expression(conditions: Sequence[Condition]) -> str:
    """All conditions joined with ``and``; the empty list filters nothing."""
    return " and ".join(f"({c.expression()})" for c in conditions)
