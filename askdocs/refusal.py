"""Refusal before generation: when retrieval shows the documents don't hold the answer, say so.

The decision reads the measured features of :mod:`askdocs.evidence` and refuses when

    confidence = best_dense + COVERAGE_WEIGHT * coverage - UNKNOWN_PENALTY * min(unknown, 2)
                 + AGREE_TOP_WEIGHT * agree_top + AGREE5_WEIGHT * agree5                    <  refuse_below

where ``best_dense`` is the cosine of the closest retrieved sentence to the question and ``coverage`` the
share of the question's content words that occur anywhere in the retrieved chunks (an unanswerable question
usually names something the corpus never mentions: "Datadog", "pgvector"), and ``unknown`` the number of
the question's words that the whole corpus never uses (asked of the BM25 index), or, if more, of its names
and numbers that no retrieved chunk contains ("Docker Swarm", "a 100 GB collection"), and ``agree_top``/``agree5``
whether dense and BM25 search alone find the same documents (``askdocs.evidence.agreement``).  The weights
and the threshold were calibrated on the dev sets (``benchmarks/answers.py`` prints the trade-off);
``refuse = false`` turns it off.  A refused question never reaches the generator: no GPU call, no made-up answer.
"""

from __future__ import annotations

import re

from askdocs.evidence import Evidence

COVERAGE_WEIGHT = 1.0
UNKNOWN_PENALTY = 0.5
AGREE_TOP_WEIGHT = 0.3
AGREE5_WEIGHT = 0.4
REFUSAL_ZH = "文档中没有答案。"

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def is_chinese(text: str) -> bool:
    """A question with a few Han characters is answered in Chinese (code names stay Latin in any language)."""
    return len(_CJK.findall(text)) >= 2


def confidence(ev: Evidence) -> float:
    f = ev.features
    unknown = min(f.get("unknown", 0.0), 2.0)
    agree = AGREE_TOP_WEIGHT * f.get("agree_top", 0.0) + AGREE5_WEIGHT * f.get("agree5", 0.0)
    return f.get("best_dense", 0.0) + COVERAGE_WEIGHT * f.get("coverage", 0.0) - UNKNOWN_PENALTY * unknown + agree


def should_refuse(ev: Evidence, threshold: float | None) -> bool:
    return threshold is not None and (not ev.units or confidence(ev) < threshold)


def refusal_text(question: str, english: str) -> str:
    """The refusal in the question's language: the setting for English, its Chinese form for Chinese."""
    return REFUSAL_ZH if is_chinese(question) else english
