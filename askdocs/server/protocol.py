"""The wire: request and response models, the stream chunks, and the one loop that streams an answer.

``/v1/chat/completions`` and ``/api/ask`` stream the same answer in two dialects (OpenAI's
``chat.completion.chunk`` objects, or askdocs's ``sources``/``token``/``done`` events).  Each dialect is a
``StreamFormat``; ``stream_answer`` is the one loop both run through, so a fix to streaming is made once.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, model_validator
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from askdocs.answer import Answer, Prepared
from askdocs.config import SearchMode
from askdocs.errors import AskdocsError, BadInputError
from askdocs.retrieve import Condition, SearchOptions, filter_expression

if TYPE_CHECKING:
    from askdocs.generate import SamplingParams
    from askdocs.server.service import Service, Slot

Event = dict[str, str]

# --------------------------------------------------------------------------- requests


def _encodable(value: str) -> str:
    """A lone surrogate (``"\\ud800"`` is valid JSON) cannot be tokenized or stored: refuse it here, as 400."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text contains a lone UTF-16 surrogate; send valid Unicode") from None
    return value


Text = Annotated[StrictStr, AfterValidator(_encodable)]
# The OS's own limit (PATH_MAX); longer paths could only fail, after costing a filesystem call.
ServerPath = Annotated[Text, Field(min_length=1, max_length=4096)]


class ContentPart(BaseModel):
    """An OpenAI content part: ``text`` parts carry a string; other kinds (images) are ignored."""

    model_config = ConfigDict(extra="allow")

    type: StrictStr
    text: Text | None = None


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: Text | list[ContentPart] | None = ""

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: keep the text ones
            return "".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


def chat_history(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """The user and assistant turns as generator messages (client system prompts are not askdocs's)."""
    return [{"role": m.role, "content": m.text()} for m in messages if m.role in ("user", "assistant")]


class RetrievalOptions(BaseModel):
    """How to search, as a client may say it: filters are structured conditions, never expression text."""

    k: int | None = Field(None, ge=1, le=100)
    mode: SearchMode | None = None
    filters: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description='Conditions joined with "and", e.g. [{"field": "source", "op": "prefix", "value": "faq/"}].',
    )

    @model_validator(mode="before")
    @classmethod
    def _no_expression(cls, data: Any) -> Any:
        """The CLI's ``--filter`` takes a Milvus expression; over HTTP that would let clients write queries,
        so a ``filter`` field is refused by name instead of being dropped in silence."""
        if isinstance(data, dict) and "filter" in data:
            raise ValueError(
                "'filter' (a Milvus expression) is not accepted over HTTP; send 'filters': "
                '[{"field": "source", "op": "prefix", "value": "faq/"}]'
            )
        return data

    def search_options(self) -> SearchOptions:
        return SearchOptions(k=self.k, mode=self.mode, filter=filter_expression(self.filters))


class ChatOptions(RetrievalOptions):
    """The ``askdocs`` extension field of a chat completion request."""

    sources_footer: bool | None = Field(
        None, description="Append a 'Sources' footer to the message content (default: the server's sources_footer)."
    )


class ChatRequest(BaseModel):
    """An OpenAI chat completion request.  Fields askdocs cannot honour (``n>1``, ``tools``, a JSON
    ``response_format``) are refused with a 400 naming them rather than silently ignored."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    n: int | None = Field(None, ge=1, description="Only 1: askdocs writes one answer per request.")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings; the answer ends before the first.")
    tools: list[dict[str, Any]] | None = Field(None, description="Not supported: refused when non-empty.")
    tool_choice: Any = None
    response_format: dict[str, Any] | None = Field(None, description='Only {"type": "text"}.')
    askdocs: ChatOptions | None = Field(None, description="askdocs extension: retrieval options and the footer.")

    def unsupported(self) -> str | None:
        """Why this request cannot be honoured as asked, or None."""
        if self.n is not None and self.n > 1:
            return f"n={self.n} is not supported: askdocs writes one answer per request (leave n out or set it to 1)"
        if self.tools:
            return "tools are not supported: askdocs answers from its documents and calls no tools"
        kind = (self.response_format or {}).get("type", "text")
        if kind != "text":
            return f"response_format {kind!r} is not supported: answers are text with [n] citations"
        if len(self.stops()) > 4:
            return "stop takes at most 4 strings"
        return None

    def stops(self) -> list[str]:
        return [s for s in ([self.stop] if isinstance(self.stop, str) else self.stop or []) if s]


class AskRequest(RetrievalOptions):
    question: Text = Field(min_length=1)
    history: list[ChatMessage] = Field(default_factory=list)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)


class SearchRequest(RetrievalOptions):
    query: Text = Field(min_length=1)


class PathsRequest(BaseModel):
    paths: list[ServerPath] = Field(min_length=1, max_length=1000)


class EmbeddingRequest(BaseModel):
    """OpenAI's ``POST /v1/embeddings`` body.  Token-id inputs are not accepted: askdocs embeds text."""

    model: str = Field(description="The embedding model the server runs (GET /api/info names it).")
    input: str | list[str] = Field(description="A text, or a list of up to 2048 texts.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, description="Accepted only when it is the model's own dimension.")
    user: str | None = None
    input_type: Literal["query", "passage", "document"] | None = Field(
        None,
        description="Add the model's query instruction or document prefix (e5: 'query: '/'passage: '); "
        "without it the texts are embedded as given.",
    )

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not texts or len(texts) > 2048:
            raise BadInputError(f"input must hold 1 to 2048 texts, not {len(texts)}")
        if any(not t for t in texts):
            raise BadInputError("input must not contain empty strings")
        return texts


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32 bytes.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


# --------------------------------------------------------------------------- responses


def source_dict(c: Any, cited: set[int]) -> dict[str, Any]:
    return {**c.to_dict(), "cited": c.n in cited}


def sources(answer: Answer) -> list[dict[str, Any]]:
    cited = {c.n for c in answer.citations}
    return [source_dict(c, cited) for c in answer.contexts]


def usage(a: Answer) -> dict[str, int]:
    p, c = a.usage.get("prompt_tokens", 0), a.usage.get("completion_tokens", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def finish_reason(a: Answer) -> str:
    return "length" if a.finish_reason == "length" else "stop"


def _where(c: Any) -> str:
    return c.source + (f" › {c.section}" if c.section else "")


def sources_footer(answer: Answer) -> str:
    """``Sources`` under the answer, for clients that show only the message content (Open WebUI, LangChain).

    The cited passages (all of them when the answer cites none), best first, each as ``[n] path › section``
    with the ``[n]`` the answer's text uses; one line per document section.
    """
    cited = {c.n for c in answer.citations}
    shown = [c for c in answer.contexts if c.n in cited] or list(answer.contexts)
    lines, seen = [], set()
    for c in shown:
        if _where(c) not in seen:
            seen.add(_where(c))
            lines.append(f"[{c.n}] {_where(c)}")
    return "\n\nSources:\n" + "\n".join(lines) if lines else ""


def passages_text(answer: Answer) -> str:
    """The message content when there is no LLM (``--llm-backend none``): the passages, best first."""
    parts = [f"[{c.n}] {_where(c)}\n\n{c.text.strip()}" for c in answer.contexts]
    return "\n\n---\n\n".join(parts) if parts else "No passages found."


def extra_content(answer: Answer, *, footer: bool, no_llm: bool) -> str:
    """What askdocs adds after the generated text in ``message.content``.

    Nothing after a refusal: listing sources under "the documents do not contain the answer" would
    read as if they held it."""
    if answer.refused:
        return ""
    if no_llm:
        return passages_text(answer)
    return sources_footer(answer) if footer else ""


def completion(rid: str, created: int, model: str, answer: Answer, extra: str = "") -> dict[str, Any]:
    """A whole ``chat.completion``, with askdocs's ``sources`` beside the choices."""
    message = {"role": "assistant", "content": answer.answer + extra}
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(answer)}],
        "usage": usage(answer),
        "sources": sources(answer),
        "sentences": [c.to_dict() for c in answer.sentences],
    }


# --------------------------------------------------------------------------- streams


class StreamFormat(Protocol):
    """One dialect of a streamed answer: what comes before the text, each piece, the end, an error."""

    def start(self, prep: Prepared) -> list[Event]: ...
    def piece(self, text: str) -> Event: ...
    def done(self, answer: Answer) -> list[Event]: ...
    def error(self, message: str) -> Event: ...


class OpenAIChunks:
    """``chat.completion.chunk`` objects; the sources and usage ride on the last one, then ``[DONE]``."""

    def __init__(self, rid: str, created: int, model: str, extra: Callable[[Answer], str] | None = None) -> None:
        self.rid, self.created, self.model = rid, created, model
        self.extra = extra  # content appended after the answer (the footer), as one more piece

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> Event:
        body = {
            "id": self.rid,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return {"data": json.dumps(body, ensure_ascii=False)}

    def start(self, prep: Prepared) -> list[Event]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def piece(self, text: str) -> Event:
        return self._chunk({"content": text})

    def done(self, answer: Answer) -> list[Event]:
        extra = self.extra(answer) if self.extra else ""
        last = self._chunk(
            {},
            finish_reason(answer),
            sources=sources(answer),
            sentences=[c.to_dict() for c in answer.sentences],
            usage=usage(answer),
        )
        return [*([self.piece(extra)] if extra else []), last, {"data": "[DONE]"}]

    def error(self, message: str) -> Event:
        return {"data": json.dumps({"error": {"message": message, "type": "askdocs_error"}})}


class AskEvents:
    """askdocs's own events: ``sources`` first, ``token`` pieces, ``done`` with the whole answer."""

    def start(self, prep: Prepared) -> list[Event]:
        contexts = [c.to_dict() for c in prep.contexts]
        return [{"event": "sources", "data": json.dumps({"query": prep.query, "contexts": contexts})}]

    def piece(self, text: str) -> Event:
        return {"event": "token", "data": json.dumps({"text": text}, ensure_ascii=False)}

    def done(self, answer: Answer) -> list[Event]:
        return [{"event": "done", "data": json.dumps(answer.to_dict(), ensure_ascii=False)}]

    def error(self, message: str) -> Event:
        return {"event": "error", "data": json.dumps({"message": message})}


def stream_answer(
    s: Service,
    collection: str,
    prep: Prepared,
    params: SamplingParams,
    fmt: StreamFormat,
    public: Callable[[str], str],
    slot: Slot,
) -> EventSourceResponse:
    """The one streaming loop: the format's start, the pieces as the generator writes them, then its end.

    The status line has gone out with the first event, so a failure after it is an ``error`` event
    (its message made ``public``), not an HTTP status.  When the client goes away the loop is
    cancelled and closing ``s.stream`` stops the generation; ``request_timeout_s`` ends it likewise.
    The admission ``slot`` is released however the stream ends.
    """

    async def events() -> AsyncIterator[Event]:
        deadline = time.monotonic() + s.settings.request_timeout_s
        pieces = s.stream(collection, prep, params)
        try:
            for e in fmt.start(prep):
                yield e
            answer = None
            try:
                async for piece, final in pieces:
                    if final is not None:
                        answer = final
                    elif piece:
                        yield fmt.piece(piece)
                    if time.monotonic() > deadline:
                        yield fmt.error(f"timed out after {s.settings.request_timeout_s:g} s (request_timeout_s)")
                        return
            except AskdocsError as e:
                yield fmt.error(public(str(e)))
                return
            assert answer is not None
            for e in fmt.done(answer):
                yield e
        finally:
            await pieces.aclose()
            slot.release()

    return EventSourceResponse(events(), ping=15, background=BackgroundTask(slot.release))
