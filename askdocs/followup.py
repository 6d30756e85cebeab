"""Follow-ups: make "and what about IVF_FLAT?" searchable without trusting a weak model.

``by_keywords`` needs no model: the follow-up plus the key terms of the user's previous question that it
does not already contain ("and what about IVF_FLAT? parameters HNSW").  Retrieval then sees both the new
subject and what was being asked about it.  ``sane`` is the check an LLM's rewrite must pass to be used
instead: it must share a content word with the follow-up (keep its subject) and bring nothing but words
of the conversation (no "What a great question!").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from askdocs.generate.base import Message
from askdocs.support import STOP_WORDS, content_words

_KEY = re.compile(r"[A-Za-z0-9_][\w.-]*[\w]|[\u3400-\u4dbf\u4e00-\u9fff]+")
_EXTRA_STOP = {"what", "which", "how", "why", "when", "where", "who", "mean", "means", "tell", "explain", "about"}


def key_terms(text: str) -> list[str]:
    """Words of ``text`` worth searching for, in order, as written: not stop words, not question words."""
    out: list[str] = []
    for w in _KEY.findall(text):
        low = w.lower()
        if low in STOP_WORDS or low in _EXTRA_STOP or (len(w) < 3 and not w.isupper()) or w in out:
            continue
        out.append(w)
    return out


def last_question(history: Sequence[Message]) -> str:
    return next((m["content"] for m in reversed(history) if m.get("role") == "user"), "")


def by_keywords(history: Sequence[Message], question: str) -> str:
    have = {w.lower() for w in key_terms(question)}
    extra = [w for w in key_terms(last_question(history)) if w.lower() not in have]
    return f"{question} {' '.join(extra)}".strip() if extra else question


def sane(rewrite: str, history: Sequence[Message], question: str) -> bool:
    """Whether an LLM's rewrite can be trusted as the search query."""
    if not rewrite or len(rewrite) > 4 * max(len(question), 40):
        return False
    words = content_words(rewrite)
    asked = content_words(question)
    if asked and not words & asked:
        return False
    known = content_words(" ".join(m["content"] for m in history) + " " + question)
    return bool(words) and len(words - known) <= max(1, len(words) // 4)
