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

from askdocs.config import Settings
from askdocs.generate import Generator, SamplingParams, TokenStream, sampling_params
from askdocs.generate.base import Generation, Message
from askdocs.generate.none import NoGenerator
from askdocs.index import Index
from askdocs.prompt import Prompt, PromptTemplate, build_prompt, rewrite_messages
from askdocs.retrieve import SearchOptions
from askdocs.store import Hit

_CITE = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
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


def is_refusal(text: str) -> bool:
    """Whether an answer says the documents do not hold the answer.

    The system prompt asks for "The documents do not contain the answer."; models paraphrase, so this
    matches the family of "does not contain / mention / provide", "no information", "not mentioned in".
    """
    return bool(_REFUSAL.search(text))


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
    """Every document in the prompt, in prompt order (``contexts[i].n == i + 1``; the last is the best)."""
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    query: str = ""
    """The search query: the question itself, or in a chat the standalone rewrite of a follow-up."""
    model: str = ""
    finish_reason: str | None = None

    @property
    def refused(self) -> bool:
        return is_refusal(self.answer)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "question": self.question,
            "answer": self.answer,
            "citations": [c.to_dict() for c in self.citations],
            "contexts": [c.to_dict() for c in self.contexts],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "usage": self.usage,
            "finish_reason": self.finish_reason,  # "length": cut at max_tokens (the web page marks it)
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
        qs = list(queries or questions)
        ranked = self.index.search_many(qs, search or SearchOptions(), timings=timings)
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
            out.append(Prepared(question, qs[i], prompt, {**per, "prompt": time.perf_counter() - t0}))
        return out

    def finish(self, prep: Prepared, gen: Generation, seconds: float) -> Answer:
        contexts = prep.contexts
        cited = [contexts[n - 1] for n in cited_numbers(gen.text, len(contexts))]
        return Answer(
            question=prep.question,
            answer=gen.text,
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
        gens = self.generator.generate([p.prompt.messages for p in preps], params)
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
        """A follow-up made standalone by the LLM, so retrieval sees what the user means.

        ``generate`` lets the server route the call through its micro-batcher.
        """
        if not history or isinstance(self.generator, NoGenerator):
            return question
        params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=64, seed=self.settings.seed)
        messages = rewrite_messages(history, question)
        gen = generate(messages, params) if generate else self.generator.generate([messages], params)[0]
        text = gen.text.strip().strip('"')
        return (text.splitlines()[0].strip() if text else "") or question

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
        if isinstance(gen, NoGenerator):
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
