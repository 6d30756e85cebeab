"""Answer: retrieve, prompt, generate, and tie the answer's [n] citations back to sources.

One ``Answerer`` holds one index and one generator, so the embedding model and
the LLM load once whether it serves one question, a batch file, a chat or a
server.  Batches go through retrieval together (one embedding pass, batched
Milvus calls) and through the generator in one call, which is what lets vLLM
batch them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from askdocs import evidence as evidence_mod
from askdocs import followup, refusal, support, translate
from askdocs.config import Settings
from askdocs.generate import Generator, SamplingParams, TokenStream, sampling_params
from askdocs.generate.base import Generation, Message
from askdocs.generate.none import NoGenerator
from askdocs.index import Index
from askdocs.prompt import Prompt, PromptTemplate, build_prompt, rewrite_messages
from askdocs.refusal import is_chinese
from askdocs.retrieve import SearchOptions
from askdocs.store import Hit

_CITE = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_CITE_SPACED = re.compile(r"([ \t]*)\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\](?=(.?))")
_REFUSAL = re.compile(
    r"\b(?:do(?:es)?\s*n[o']t|do(?:es)? not|cannot|can't|unable to)\s+"
    r"(?:contain|include|mention|provide|cover|say|answer|find|have|describe|specify)"
    r"|\bno (?:information|mention|answer)\b|\bnot (?:mentioned|covered|specified|found) in\b",
    re.IGNORECASE,
)


def cited_numbers(text: str, n_docs: int) -> list[int]:
    """The document numbers an answer cites as [n] or [n, m], in first-cited order, within 1..n_docs."""
    seen: list[int] = []
    for group in _CITE.findall(text):
        for part in re.split(r"[,;]", group):
            n = int(part)
            if 1 <= n <= n_docs and n not in seen:
                seen.append(n)
    return seen


def drop_unknown_citations(text: str, n_docs: int) -> str:
    """``[n]`` markers that point at no retrieved chunk removed (``[2, 9]`` with 5 chunks becomes ``[2]``)."""

    def keep(m: re.Match[str]) -> str:
        parts = [p.strip() for p in re.split(r"[,;]", m.group(2))]
        ok = [p for p in parts if 1 <= int(p) <= n_docs]
        if len(ok) == len(parts):
            return m.group(0)
        if ok:
            return f"{m.group(1)}[{', '.join(ok)}]"
        # "C [9]." loses the space with the marker; "[1]. [9] The" keeps it before the next word
        return m.group(1) if m.group(3).isalnum() else ""

    return _CITE_SPACED.sub(keep, text)


def is_refusal(text: str) -> bool:
    """Whether an answer says the documents do not hold the answer (in English, or 文档中没有答案).

    The system prompt asks for "The documents do not contain the answer."; models paraphrase, so this
    matches the family of "does not contain / mention / provide", "no information", "not mentioned in".
    """
    return bool(_REFUSAL.search(text)) or refusal.REFUSAL_ZH.rstrip("。") in text


@dataclass
class Citation:
    n: int
    source: str
    section: str
    text: str
    score: float
    id: str = ""
    title: str = ""

    @classmethod
    def of(cls, n: int, hit: Hit) -> Citation:
        return cls(n, hit.source, hit.section, hit.text, hit.score, hit.id, hit.title)

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "source": self.source, "section": self.section, "text": self.text, "score": self.score}


@dataclass
class Answer:
    question: str
    answer: str
    citations: list[Citation]
    """The documents the answer cites, in the order it first cites them."""
    contexts: list[Citation]
    """Every document in the prompt, best first (``contexts[i].n == i + 1``; the prompt writes them best last)."""
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    query: str = ""
    """The search query: the question itself, or in a chat the standalone rewrite of a follow-up."""
    model: str = ""
    finish_reason: str | None = None
    sentences: list[support.SentenceCheck] = field(default_factory=list)
    """Each answer sentence, the [n] it cites and whether they support it (``askdocs.support``)."""
    refused_early: bool = False
    """Refused before generation: retrieval showed the documents do not hold the answer."""
    quoted: bool = False
    """Quoted from the documents (extractive): a quote saying "does not contain" is not a refusal."""

    @property
    def refused(self) -> bool:
        return self.refused_early or (not self.quoted and is_refusal(self.answer))

    @property
    def support(self) -> float | None:
        return support.support_rate(self.sentences)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "question": self.question,
            "answer": self.answer,
            "citations": [c.to_dict() for c in self.citations],
            "contexts": [c.to_dict() for c in self.contexts],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "usage": self.usage,
            "finish_reason": self.finish_reason,  # "length": cut at max_tokens (the web page marks it)
            "sentences": [c.to_dict() for c in self.sentences],
            "refused": self.refused,
        }
        if self.query and self.query != self.question:
            out["query"] = self.query
        return out


@dataclass
class Prepared:
    """A question retrieved and prompted, ready for the generator (the server streams from here)."""

    question: str
    query: str
    prompt: Prompt
    timings: dict[str, float]
    evidence: evidence_mod.Evidence | None = None
    refusal: str | None = None
    """The refusal text when retrieval shows the documents do not hold the answer: then no generator runs."""

    @property
    def contexts(self) -> list[Citation]:
        return [Citation.of(i + 1, h) for i, h in enumerate(self.prompt.hits)]


class Answerer:
    """Questions in, cited answers out."""

    def __init__(
        self,
        index: Index,
        generator: Generator,
        settings: Settings | None = None,
        template: PromptTemplate | None = None,
    ) -> None:
        self.index = index
        self.generator = generator
        self.settings = settings or index.settings
        self.template = template or PromptTemplate.from_file(self.settings.prompt_file)

    # ------------------------------------------------------------------ parts

    def warm_up(self) -> Answerer:
        """Everything loaded before the first question: the index's models (the generator loads when made)."""
        self.index.warm_up()
        return self

    def params(self, **overrides: object) -> SamplingParams:
        return sampling_params(self.settings, **overrides)

    def _budget(self, params: SamplingParams) -> int | None:
        window = self.generator.max_context
        return None if not window else window - params.max_tokens

    def prepare_many(
        self,
        questions: Sequence[str],
        *,
        search: SearchOptions | None = None,
        histories: Sequence[Sequence[Message]] | None = None,
        queries: Sequence[str] | None = None,
        params: SamplingParams | None = None,
    ) -> list[Prepared]:
        """Retrieve for all questions at once, then build each prompt within the context window."""
        params = params or self.params()
        timings: dict[str, float] = {}
        qs = [self.index.search_query(q) for q in (queries or questions)]  # evidence reads what was searched
        # answers read a list that a chunk announces but was cut from (``SearchOptions.whole_lists``)
        ranked = self.index.search_many(qs, (search or SearchOptions()).replace(whole_lists=True), timings=timings)
        n = max(len(questions), 1)
        per = {key: v / n for key, v in timings.items()}  # a batch's retrieval cost, shared out evenly
        budget = self._budget(params)
        counter = None if isinstance(self.generator, NoGenerator) else self.generator.count_tokens
        out = []
        for i, (question, hits) in enumerate(zip(questions, ranked, strict=True)):
            t0 = time.perf_counter()
            prompt = build_prompt(
                question,
                hits,
                template=self.template,
                history=histories[i] if histories else (),
                count_tokens=counter,
                budget=budget,
            )
            prep = Prepared(question, qs[i], prompt, {**per, "prompt": time.perf_counter() - t0})
            self._ground(prep)
            out.append(prep)
        return out

    def known_words(self, words: Sequence[str]) -> list[bool]:
        """Whether the corpus uses each word at all: one batched BM25 search, one hit each is enough.

        A word the analyzer splits ("IVF_RABITQ" into ivf and rabitq) is known only when each part is: a
        search for the whole word finds any chunk with "ivf", and the corpus would seem to know RaBitQ."""
        if not words or not self.index.store.supports_bm25:
            return [True] * len(words)
        parts = [[p for p in re.split(r"[\W_]+", w) if p] or [w] for w in words]
        unique = sorted({p for ps in parts for p in ps})
        hits = self.index.search_many(unique, SearchOptions(k=1, mode="bm25"))
        known = {p: bool(hs) for p, hs in zip(unique, hits, strict=True)}
        return [all(known[p] for p in ps) for ps in parts]

    def agreement(self, query: str) -> dict[str, float]:
        """Whether dense and BM25 search alone find the same documents (``askdocs.evidence.agreement``).

        Two extra searches of 5 on the refusal path; without a BM25 index there is nothing to compare, and
        the features say "agree" so that a dense-only collection is not refused more for it."""
        if not self.index.store.supports_bm25:
            return {"agree_top": 1.0, "agree5": 1.0}
        dense = self.index.search_many([query], SearchOptions(k=5, mode="dense"))[0]
        bm25 = self.index.search_many([query], SearchOptions(k=5, mode="bm25"))[0]
        return evidence_mod.agreement([h.source for h in dense], [h.source for h in bm25])

    def _ground(self, prep: Prepared) -> None:
        """Score the retrieved sentences; refuse when they do not answer; hand an extractive backend its quotes."""
        extract = getattr(self.generator, "messages_for", None)
        if not (self.settings.refuse or extract):
            return
        t0 = time.perf_counter()
        # query-time work: a bfloat16 collection's float32 ONNX embedder, so an answer does not load torch
        embedder = self.index.embedder().for_queries() if prep.prompt.hits else None
        ev = evidence_mod.gather(prep.query, prep.prompt.hits, embedder, self.known_words)
        if self.settings.refuse:
            ev.features.update(self.agreement(prep.query))
            if prep.query != prep.question and is_chinese(prep.question) and not is_chinese(prep.query):
                text = " ".join(f"{h.title} {h.section} {h.text}" for h in prep.prompt.hits)
                ev.features["coverage"] = translate.coverage(prep.question, text)  # glossed: per Chinese word
        prep.evidence = ev
        refuse = self.settings.refuse and refusal.should_refuse(ev, self.settings.refuse_below)
        if refuse or (extract and not ev.units):  # nothing to quote is nothing to answer
            prep.refusal = refusal.refusal_text(prep.question, self.settings.refusal_text)
        if extract and prep.refusal is None:
            prep.prompt.messages = extract(ev)
        prep.timings["evidence"] = time.perf_counter() - t0

    def finish(self, prep: Prepared, gen: Generation, seconds: float) -> Answer:
        contexts = prep.contexts
        text = drop_unknown_citations(gen.text, len(contexts))
        cited = [contexts[n - 1] for n in cited_numbers(text, len(contexts))]
        embed = None
        if contexts and not getattr(self.generator, "messages_for", None):
            embed = self.index.embedder().for_queries().embed_documents  # paraphrases of generative models
        checks = support.check_answer(text, [c.text for c in contexts], is_refusal=is_refusal, embed=embed)
        return Answer(
            question=prep.question,
            answer=text,
            sentences=checks,
            refused_early=prep.refusal is not None,
            quoted=bool(getattr(self.generator, "messages_for", None)),
            citations=cited,
            contexts=contexts,
            timings={**prep.timings, "generate": seconds},
            usage={
                "prompt_tokens": gen.prompt_tokens or prep.prompt.prompt_tokens,
                "completion_tokens": gen.completion_tokens,
            },
            query=prep.query,
            model=self.generator.name,
            finish_reason=gen.finish_reason,
        )

    # ------------------------------------------------------------------ operations

    def ask_many(
        self,
        questions: Sequence[str],
        *,
        search: SearchOptions | None = None,
        **sampling: object,
    ) -> list[Answer]:
        """Answer a batch: one retrieval pass and ONE generator call, in input order."""
        if not questions:
            return []
        params = self.params(**sampling)
        preps = self.prepare_many(questions, search=search, params=params)
        t0 = time.perf_counter()
        todo = [p for p in preps if p.refusal is None]
        made = iter(self.generator.generate([p.prompt.messages for p in todo], params) if todo else [])
        gens = [Generation(p.refusal, finish_reason="refused") if p.refusal is not None else next(made) for p in preps]
        per = (time.perf_counter() - t0) / len(preps)
        return [self.finish(p, g, per) for p, g in zip(preps, gens, strict=True)]

    def ask(self, question: str, **kw: Any) -> Answer:
        return self.ask_many([question], **kw)[0]

    def rewrite(
        self,
        history: Sequence[Message],
        question: str,
        generate: Callable[[Sequence[Message], SamplingParams], Generation] | None = None,
    ) -> str:
        """A follow-up made standalone, so retrieval sees what the user means.

        A capable LLM rewrites it; its rewrite is kept only if it passes ``followup.sane`` (a 135M model
        answers "What a great question!").  Without an LLM that can (extractive, none) or when the check
        fails, the follow-up gets the earlier question's key terms (``followup.by_keywords``), which cannot
        go wrong the same way.  ``generate`` lets the server route the call through its micro-batcher.
        """
        if not history:
            return question
        fallback = followup.by_keywords(history, question)
        if isinstance(self.generator, NoGenerator) or not getattr(self.generator, "can_rewrite", True):
            return fallback
        params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=64, seed=self.settings.seed)
        messages = rewrite_messages(history, question)
        gen = generate(messages, params) if generate else self.generator.generate([messages], params)[0]
        text = gen.text.strip().strip('"')
        text = text.splitlines()[0].strip() if text else ""
        return text if followup.sane(text, history, question) else fallback

    def recent(self, history: Sequence[Message]) -> list[Message]:
        """The chat turns kept in the prompt (then trimmed further to fit the window)."""
        turns = self.settings.history_turns
        return list(history)[-turns:] if turns else []

    def stream(
        self,
        question: str,
        *,
        history: Sequence[Message] = (),
        search: SearchOptions | None = None,
        **sampling: object,
    ) -> AnswerStream:
        """Retrieve now; generate as the caller iterates.  With ``history``, the question is a chat turn."""
        params = self.params(**sampling)
        t0 = time.perf_counter()
        query = self.rewrite(history, question)
        rewrite_s = time.perf_counter() - t0
        prep = self.prepare_many(
            [question], search=search, histories=[self.recent(history)], queries=[query], params=params
        )[0]
        if history:
            prep.timings["rewrite"] = rewrite_s
        return AnswerStream(self, prep, params)


class AnswerStream:
    """Iterate for the answer's text pieces; ``contexts`` is known before the first piece, ``answer`` after the last."""

    def __init__(self, answerer: Answerer, prep: Prepared, params: SamplingParams) -> None:
        self.prepared = prep
        self.contexts = prep.contexts
        self.answer: Answer | None = None
        self._answerer = answerer
        self._params = params

    def __iter__(self) -> Iterator[str]:
        gen = self._answerer.generator
        t0 = time.perf_counter()
        if self.prepared.refusal is not None:
            yield self.prepared.refusal
            result = Generation(self.prepared.refusal, finish_reason="refused")
        elif isinstance(gen, NoGenerator):
            result = Generation("")
        else:
            ts: TokenStream = gen.stream(self.prepared.prompt.messages, self._params)
            yield from ts
            assert ts.result is not None
            result = ts.result
        self.answer = self._answerer.finish(self.prepared, result, time.perf_counter() - t0)

    def result(self) -> Answer:
        for _ in self:
            pass
        assert self.answer is not None
        return self.answer
