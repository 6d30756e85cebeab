"""Support: does the chunk an answer sentence cites actually back it?

The rule (``supports``), in order:

1. A sentence that is a verbatim span of the chunk (white space normalised) is supported.
2. Every **number** (``16``, ``1.8``, ``2.4``) and every **identifier** of the sentence must appear in the
   chunk, case-insensitively.  Identifiers are the words that name things and that a model invents when it
   makes things up: words in backticks, words with ``_``, a digit, an inner capital (``efConstruction``,
   ``maxDeg``) or all in capitals (``HNSW``, ``GPU_CAGRA``).  One invented name or number makes the
   sentence unsupported, however close the rest is.
3. Of its **content words** (lower-cased words of 3+ letters that are not English stop words, compared by a
   crude stem: the first 5 letters), at least ``MIN_OVERLAP`` (60%) must appear in the chunk; or, when an
   embedder is given, the sentence's embedding must be within cosine ``MIN_COSINE`` (0.75) of one sentence
   of the chunk (a paraphrase that keeps the names and numbers).

An answer sentence is checked against the chunks its ``[n]`` markers cite (any one of them may support it).
A sentence with no citation is unsupported, except the refusal sentence, which needs none.  Headings and
connective fragments shorter than three content words that cite nothing are not counted as sentences.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from askdocs import sentences

MIN_OVERLAP = 0.6
MIN_COSINE = 0.75

_CITE = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[.-][A-Za-z0-9_]+)*")
_TICK = re.compile(r"`([^`\n]{1,80})`")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | {"use", "used", "using", "can", "also", "does", "like", "may"}

Embed = Callable[[Sequence[str]], np.ndarray]
"""Texts in, L2-normalised vectors out (``Embedder.embed_documents``)."""


def citations(text: str) -> list[int]:
    """The [n] numbers a piece of text cites, in order, without repeats."""
    seen: list[int] = []
    for group in _CITE.findall(text):
        for part in re.split(r"[,;]", group):
            if (n := int(part)) not in seen:
                seen.append(n)
    return seen


def strip_citations(text: str) -> str:
    return re.sub(r"\s+([.,;:!?])", r"\1", _CITE.sub("", text)).strip()


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def numbers(text: str) -> set[str]:
    # a list marker ("1. ") is layout, not a fact
    return {n.rstrip(".,") for n in _NUMBER.findall(re.sub(r"(?m)^\s*\d{1,3}[.)]\s", " ", text))}


def identifiers(text: str) -> set[str]:
    out = {t.strip().lower() for t in _TICK.findall(text)}
    for w in _WORD.findall(text):
        if "_" in w or any(c.isdigit() for c in w) or (len(w) > 1 and w.isupper()) or re.search(r"[a-z][A-Z]", w):
            out.add(w.lower())
    return out


def content_words(text: str) -> set[str]:
    """Lower-cased words of 3+ letters that are not stop words, cut to a 5-letter stem; CJK characters."""
    words = {w.lower() for w in re.findall(r"[A-Za-z][A-Za-z0-9_]{2,}", text)}
    out = {w[:5] for w in words if w not in STOP_WORDS}
    out |= set(_CJK.findall(text))
    return out


def terms(text: str) -> list[str]:
    """BM25 terms: content-word stems, and CJK characters with their bigrams (CJK has no spaces)."""
    words = [w.lower()[:5] for w in re.findall(r"[A-Za-z0-9_]+", text)]
    out = [w for w in words if w not in STOP_WORDS and len(w) > 1]
    for run in re.findall(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+", text):
        out.extend(run)
        out.extend(run[i : i + 2] for i in range(len(run) - 1))
    return out


@dataclass
class Verdict:
    supported: bool
    reason: str
    """Why not: ``verbatim``/``overlap``/``embedding`` when supported, else what is missing."""


def supports(sentence: str, chunk: str, embed: Embed | None = None) -> Verdict:
    """Whether ``chunk`` supports ``sentence`` under the rule in the module docstring."""
    s = strip_citations(sentence)
    if not s:
        return Verdict(False, "empty")
    low = _norm(chunk)
    if _norm(s) in low:
        return Verdict(True, "verbatim")
    missing_n = sorted(n for n in numbers(s) if n not in numbers(chunk) and n not in low)
    if missing_n:
        return Verdict(False, f"numbers not in the chunk: {', '.join(missing_n)}")
    missing_i = sorted(i for i in identifiers(s) if i not in low)
    if missing_i:
        return Verdict(False, f"names not in the chunk: {', '.join(missing_i)}")
    words = content_words(s)
    if not words:
        return Verdict(True, "overlap")
    have = content_words(chunk)
    share = len(words & have) / len(words)
    if share >= MIN_OVERLAP:
        return Verdict(True, "overlap")
    if embed is not None:
        units = sentences.sentences(chunk) or [chunk]
        vecs = embed([s, *units])
        best = float(np.max(vecs[1:] @ vecs[0]))
        if best >= MIN_COSINE:
            return Verdict(True, "embedding")
        return Verdict(False, f"{share:.0%} of its words in the chunk, closest sentence cosine {best:.2f}")
    return Verdict(False, f"only {share:.0%} of its words in the chunk")


@dataclass
class SentenceCheck:
    text: str
    cites: list[int]
    supported: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "cites": self.cites, "supported": self.supported, "reason": self.reason}


def answer_units(answer: str) -> list[str]:
    """An answer's sentences, each with the citations that follow its full stop ("... library. [5] To ...")."""
    out: list[str] = []
    for u in sentences.sentences(answer):
        lead = re.match(r"(?:\[\d{1,3}(?:\s*[,;]\s*\d{1,3})*\]\s*[.!?]?\s*)+", u)
        if lead and out:
            out[-1] = f"{out[-1]} {lead.group(0).strip()}"
            u = u[lead.end() :]
        if u.strip():
            out.append(u)
    return out


def check_answer(
    answer: str,
    chunks: Sequence[str],
    *,
    is_refusal: Callable[[str], bool] | None = None,
    embed: Embed | None = None,
) -> list[SentenceCheck]:
    """Each sentence of ``answer`` with the [n] it cites (``chunks[n - 1]``) and whether they support it."""
    out = []
    for unit in answer_units(answer):
        cites = citations(unit)
        plain = strip_citations(unit)
        if is_refusal is not None and is_refusal(plain) and not cites:
            out.append(SentenceCheck(unit, [], True, "refusal"))
            continue
        if not cites:
            if len(content_words(plain)) < 3 or sentences.split(plain)[0].kind == "heading":
                continue  # "Here is how:", a heading: nothing to support
            out.append(SentenceCheck(unit, [], False, "cites nothing"))
            continue
        valid = [n for n in cites if 1 <= n <= len(chunks)]
        if not valid:
            out.append(SentenceCheck(unit, cites, False, "cites no retrieved chunk"))
            continue
        verdicts = [supports(plain, chunks[n - 1], embed) for n in valid]
        ok = next((v for v in verdicts if v.supported), None)
        out.append(SentenceCheck(unit, cites, ok is not None, (ok or verdicts[0]).reason))
    return out


def support_rate(checks: Sequence[SentenceCheck]) -> float | None:
    """Share of checked sentences that are supported (None for an answer with no sentence to check)."""
    return sum(c.supported for c in checks) / len(checks) if checks else None
