"""Evidence: every sentence of the retrieved chunks scored against the question.

Both the refusal decision and the extractive backend need to know which sentence
of the retrieved chunks answers the question, and how well.  Each unit of
:func:`askdocs.sentences.split` gets two scores:

* ``dense``: cosine between the question (embedded as a query) and the sentence (embedded with its
  section heading in front, since "It takes M and efConstruction" means little without "HNSW");
* ``bm25``: BM25 (rank-bm25's Okapi) of the question's terms over the retrieved sentences, divided by
  its largest value so it lies in [0, 1].

``score = dense + BM25_WEIGHT * bm25``.  The embedder is the one askdocs already has loaded, so this
costs one forward pass over ~20-40 short sentences per question.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from rank_bm25 import BM25Okapi

from askdocs import sentences
from askdocs.store import Hit
from askdocs.support import STOP_WORDS as _STOP
from askdocs.support import content_words, terms

Known = Callable[[Sequence[str]], list[bool]]
"""Words in, whether the corpus contains each (``Answerer`` asks Milvus's BM25 index)."""

BM25_WEIGHT = 0.5
MIN_NEW_WORDS = 3
MAX_UNIT_CHARS = 1200
"""Longer units (big code blocks, tables) are not candidates: an answer is not a page of code."""


@dataclass
class Scored:
    n: int
    """The chunk's number in the prompt ([n])."""
    text: str
    kind: str
    start: int
    dense: float
    bm25: float
    parts: tuple[float, ...] = ()
    """Its score against each part of a question that asks two things (``question_parts``); else empty."""

    @property
    def score(self) -> float:
        return self.dense + BM25_WEIGHT * self.bm25


@dataclass
class Evidence:
    question: str
    units: list[Scored]
    features: dict[str, float] = field(default_factory=dict)
    sources: dict[int, str] = field(default_factory=dict)
    """Each chunk's document ([n] -> source): the extractive backend prefers quoting fewer documents."""

    def best(self) -> Scored | None:
        return max(self.units, key=lambda u: u.score, default=None)


# "..., and does the command block other sessions?": a second question joined by "and", not a list of nouns
_SECOND_QUESTION = re.compile(
    r",?\s+and\s+(?=(?:do|does|did|is|are|was|were|can|could|will|would|should|what|what's|how|which|why|when|"
    r"where|who)\b)",
    re.IGNORECASE,
)


def question_parts(question: str) -> list[str]:
    """The questions inside one that asks two or more things, or ``[]`` for a single question.

    "If I CLUSTER a table, does it stay ordered as rows are added, and does the command block other sessions?"
    is two questions: scored as one, every best sentence answers the first (ordering), and the lock is never
    quoted.  Only a clause that starts like a question counts: "an error message and a SQLSTATE code" is one."""
    parts = [p.strip(" ,;") for p in _SECOND_QUESTION.split(question)]
    parts = [p for p in parts if len(content_words(p)) >= 1]
    return parts if len(parts) > 1 else []


def _with_subject(parts: Sequence[str]) -> list[str]:
    """The parts as queries: a later part ("does the command block other sessions?") leans on the first for its
    subject, so it is embedded behind the first part's names ("CLUSTER: does the command ...") or, lacking
    names, its content words.  Without them it matches nothing in particular."""
    if not parts:
        return []
    first = parts[0]
    lead = re.match(r"\s*\S+", first)
    rest = first[lead.end() :] if lead else first
    names = re.findall(r"(?<![\w.])[A-Z][A-Za-z0-9]+(?![\w-])|[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+", rest)
    names = [w for w in names if w.lower() not in _STOP]
    subject = " ".join(dict.fromkeys(names)) or " ".join(
        dict.fromkeys(w for w in re.findall(r"[A-Za-z][A-Za-z0-9_]{2,}", first) if w.lower() not in _STOP)
    )
    return [first, *(f"{subject}: {p}" if subject else p for p in parts[1:])]


def informative(u: Scored, question_words: set[str]) -> bool:
    """A unit that could answer: not a heading, a code block cut open, a question, or an echo of the question
    (fewer than ``MIN_NEW_WORDS`` content words the question lacks: a tutorial quoting the question)."""
    if u.kind in ("heading", "fragment") or u.text.rstrip().endswith(("?", "？")):
        return False
    return len(content_words(u.text) - question_words) >= MIN_NEW_WORDS


def rare_words(question: str, pieces: Callable[[str], int] | None = None) -> list[str]:
    """The question's words that name things rather than say things, lower-cased: words with a digit or
    ``_``, and words the embedding model's tokenizer does not know whole (``pieces(word) > 1``: "datadog",
    "pgvector"); ordinary English words ("mean", "install") are in its vocabulary, and a small corpus may well
    lack them without lacking the answer."""
    words = {w for w in re.findall(r"[A-Za-z][A-Za-z0-9_]{3,}", question) if w.lower() not in _STOP}
    out = set()
    for w in words:
        if "_" in w or any(c.isdigit() for c in w) or (pieces is not None and pieces(w.lower()) > 1):
            out.add(w.lower())
    return sorted(out)


def missing_names(question: str, hits: Sequence[Hit]) -> int:
    """Capitalised words after the first (names: Flink, Airflow, Vercel, Swarm, FIPS) that no retrieved chunk
    contains.  The corpus may use the word elsewhere ("Spring" in a season, "Kernel" in an OS page), so
    ``unknown`` misses them; a question about a thing the documents cover retrieves a chunk that names it."""
    first = re.match(r"\s*\S+", question)
    rest = question[first.end() :] if first else question
    # not the first part of a compound modifier: "Google-style input" describes the input, it names no product
    names = {w.lower() for w in re.findall(r"(?<![\w.])[A-Z][A-Za-z0-9]+(?![\w-])", rest)} - _STOP
    # numbers of two digits or more ("10 million vectors", "a 100 GB collection"); a lone digit is too common
    # in passing ("(3)", "step 2") to say the question is about something the documents lack
    names |= set(re.findall(r"(?<![\w.])\d{2,}(?![\d.]*\w)", rest))
    # identifiers (pg_stat_io, vacuum_buffer_usage_limit) whole: the corpus may know every part of one
    idents = {w.lower() for w in re.findall(r"[A-Za-z0-9]+(?:_[A-Za-z0-9]+)+", question)}
    if not names and not idents:
        return 0
    text = " ".join(f"{h.title} {h.section} {h.text}" for h in hits).lower()
    found = set(re.findall(r"[a-z]+|[0-9]+", text))  # "250ms" holds the question's "250 ms"
    return len(names - found) + sum(i not in text for i in idents)


def features(
    question: str,
    hits: Sequence[Hit],
    units: Sequence[Scored],
    known: Known | None = None,
    pieces: Callable[[str], int] | None = None,
) -> dict[str, float]:
    """What the refusal rule reads: how close the best hit and the best sentence are to the question, how
    much of the question's vocabulary the retrieved text contains, and how many of its words the whole
    corpus never uses (``known`` asks the BM25 index; an unanswerable question often names something the
    documents never mention: Datadog, pgvector)."""
    words = content_words(question)
    found = content_words(" ".join(f"{h.title} {h.section} {h.text}" for h in hits))
    rare = rare_words(question, pieces)
    unknown = sum(not k for k in known(rare)) if known is not None and rare else 0
    unknown = max(unknown, missing_names(question, hits))  # one missing name counted once
    return {
        "unknown": float(unknown),
        "top_hit": max((h.score for h in hits), default=0.0),
        "best_dense": max((u.dense for u in units if informative(u, words)), default=0.0),
        "coverage": len(words & found) / len(words) if words else 1.0,
    }


def gather(question: str, hits: Sequence[Hit], embedder: object | None, known: Known | None = None) -> Evidence:
    """Score every unit of ``hits`` (best first, as numbered: ``hits[i]`` is [i + 1]) against ``question``."""
    raw: list[tuple[int, sentences.Span, Hit]] = []
    for i, hit in enumerate(hits):
        for span in sentences.split(hit.text):
            if span.end - span.start <= MAX_UNIT_CHARS:
                raw.append((i + 1, span, hit))
    if not raw:
        return Evidence(question, [], features(question, hits, [], known), _sources(hits))
    texts = [span.of(hit.text) for _, span, hit in raw]
    pieces = embedder.tokenizer_length() if embedder is not None else None  # type: ignore[attr-defined]
    # a question that asks two things: each part scored apart too, so that the extractive answer quotes for each
    parts = question_parts(question)
    if embedder is not None:
        qs = embedder.embed_queries([question, *_with_subject(parts)])  # type: ignore[attr-defined]
        docs = embedder.embed_documents(  # type: ignore[attr-defined]
            [f"{hit.section}: {t}" if hit.section else t for (_, _, hit), t in zip(raw, texts, strict=True)]
        )
        sims = docs @ np.asarray(qs).T
    else:
        sims = np.zeros((len(texts), 1 + len(parts)))
    bm25 = BM25Okapi([terms(t) or ["\0"] for t in texts])
    bms = np.stack([_bm25(bm25, q, len(texts)) for q in [question, *parts[:1]]], axis=1)
    # the first part as any question; a later one by meaning alone: its few words are generic ("command",
    # "downside") and BM25 picks whichever sentence repeats them ("issuing the command again")
    scores = sims.copy()
    scores[:, : bms.shape[1]] += BM25_WEIGHT * bms
    units = [
        Scored(n, t, span.kind, span.start, float(sims[i, 0]), float(bms[i, 0]), tuple(map(float, scores[i, 1:])))
        for i, ((n, span, _), t) in enumerate(zip(raw, texts, strict=True))
    ]
    return Evidence(question, units, features(question, hits, units, known, pieces), _sources(hits))


def _bm25(index: BM25Okapi, query: str, n: int) -> np.ndarray:
    """BM25 of ``query``'s terms over the units, divided by its largest value so it lies in [0, 1]."""
    qterms = terms(query)
    bm = np.asarray(index.get_scores(qterms), dtype=float) if qterms else np.zeros(n)
    bm = np.clip(bm, 0, None)
    return bm / bm.max() if bm.max() > 0 else bm


def agreement(dense: Sequence[str], bm25: Sequence[str]) -> dict[str, float]:
    """How far dense and BM25 search alone agree on the documents (best first): ``agree_top`` is 1 when both
    rank the same document first, ``agree5`` the share of the top 5 documents they share.

    An answerable question is about something the corpus names, so term matching and meaning tend to land on
    the same page; a question the corpus cannot answer pulls them apart (on the Milvus dev sets: the same top
    document for 8 of 18 answerable questions and none of 16 unanswerable ones)."""
    top = float(bool(dense) and bool(bm25) and dense[0] == bm25[0])
    return {"agree_top": top, "agree5": len(set(dense[:5]) & set(bm25[:5])) / 5}


def _sources(hits: Sequence[Hit]) -> dict[int, str]:
    return {i + 1: h.source for i, h in enumerate(hits)}
