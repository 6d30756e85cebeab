"""The ``extractive`` backend: an answer made of the retrieved chunks' own sentences.

It cannot invent anything: every sentence of its answer is a verbatim span of a retrieved chunk, cited
with that chunk's [n].  The answerer scores the chunks' sentences against the question
(:mod:`askdocs.evidence`: the embedder askdocs already has, plus BM25 term overlap) and hands this
backend the chosen ones as its "prompt" (:meth:`ExtractiveGenerator.messages_for`), so it runs through
the same ``generate``/``stream`` calls as an LLM: ``ask``, ``chat``, ``--batch``, the server's
micro-batcher and the web page need nothing of their own.

Candidates: no headings, no code block cut open by the chunk boundary, no questions, and no unit
that only
echoes the question (fewer than ``MIN_NEW_WORDS`` content words the question does not have: a tutorial that
quotes the question is not its answer).  Selection: the best-scoring units down to ``RELATIVE_FLOOR`` of the
best, at most ``MAX_UNITS`` of them
and ``MAX_CHARS`` characters in all; headings are left out.  Units of one chunk stay in the chunk's own
order (an explanation reads in the order it was written); chunks come best first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

from askdocs.errors import AskdocsError
from askdocs.evidence import Evidence, Scored, informative
from askdocs.generate.base import BaseGenerator, Generation, Message, SamplingParams, TokenStream
from askdocs.support import content_words

MAX_UNITS = 3
MAX_CHARS = 900
RELATIVE_FLOOR = 0.7
_MARK = "askdocs-extractive"


def select(ev: Evidence) -> list[Scored]:
    """The units that make the answer, in answer order."""
    qwords = content_words(ev.question)
    cands = sorted((u for u in ev.units if informative(u, qwords)), key=lambda u: u.score, reverse=True)
    if not cands:
        return []
    floor = cands[0].score * RELATIVE_FLOOR
    chosen: list[Scored] = []
    size = 0
    for u in cands:
        if len(chosen) >= MAX_UNITS or u.score < floor:
            break
        if chosen and size + len(u.text) > MAX_CHARS:
            continue
        chosen.append(u)
        size += len(u.text)
    rank = {}
    for u in chosen:
        rank.setdefault(u.n, len(rank))
    return sorted(chosen, key=lambda u: (rank[u.n], u.start))


def render(units: Sequence[Scored]) -> list[str]:
    """Answer pieces: each unit followed by its citation; blocks (code, tables, items) on their own lines."""
    pieces: list[str] = []
    prev_block = False
    for i, u in enumerate(units):
        block = u.kind != "sentence"
        sep = "" if i == 0 else ("\n\n" if block or prev_block else " ")
        cite = f"\n[{u.n}]" if u.kind == "code" else f" [{u.n}]"
        pieces.append(f"{sep}{u.text}{cite}")
        prev_block = block
    return pieces


class ExtractiveGenerator(BaseGenerator):
    """Quotes, never writes.  Needs no model of its own: the evidence comes scored by the answerer."""

    name = "extractive"
    can_rewrite = False
    """Chat follow-ups are rewritten by keywords, not by this backend (see ``Answerer.rewrite``)."""

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return 0

    def messages_for(self, ev: Evidence) -> list[Message]:
        units = [
            {"n": u.n, "text": u.text, "kind": u.kind, "start": u.start, "dense": u.dense, "bm25": u.bm25}
            for u in select(ev)
        ]
        return [{"role": "system", "content": _MARK}, {"role": "user", "content": json.dumps(units)}]

    def _units(self, messages: Sequence[Message]) -> list[Scored]:
        if len(messages) != 2 or messages[0].get("content") != _MARK:
            raise AskdocsError("the extractive backend answers only from retrieved passages, not from free prompts")
        return [Scored(**u) for u in json.loads(messages[1]["content"])]

    def generate(self, conversations: Sequence[Sequence[Message]], params: SamplingParams) -> list[Generation]:
        out = []
        for messages in conversations:
            pieces = render(self._units(messages))
            out.append(Generation("".join(pieces), completion_tokens=len(pieces), finish_reason="stop"))
        return out

    def stream(self, messages: Sequence[Message], params: SamplingParams) -> TokenStream:
        pieces = render(self._units(messages))

        def gen(ts: TokenStream) -> Iterator[str]:
            yield from pieces
            ts.result = Generation("".join(pieces), completion_tokens=len(pieces), finish_reason="stop")

        return TokenStream(gen)
