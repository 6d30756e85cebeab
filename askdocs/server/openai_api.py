"""The OpenAI-compatible API: ``/v1/models`` lists the collections, ``/v1/chat/completions`` answers.

``model`` names the collection; the sources come back in an extra top-level ``sources`` field
(in the final chunk when streaming) and, for clients that show only the message content, as a
"Sources" footer under the answer; an optional ``askdocs`` field tunes retrieval and the footer.
Client housekeeping prompts (Open WebUI's title, tags and follow-ups: ``askdocs.server.tasks``) go
straight to the LLM without retrieval.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from askdocs.generate.none import NoGenerator
from askdocs.server.guards import check_chat, public
from askdocs.server.protocol import (
    ChatOptions,
    ChatRequest,
    OpenAIChunks,
    chat_history,
    completion,
    extra_content,
    stream_answer,
)
from askdocs.server.service import Service, get_service
from askdocs.server.tasks import client_task

router = APIRouter(prefix="/v1", tags=["openai"])


def _model(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "askdocs"}


@router.get("/models")
async def models(s: Service = Depends(get_service)) -> dict[str, Any]:
    names = await run_in_threadpool(s.collections)
    now = int(time.time())
    return {"object": "list", "data": [_model(n, now) for n in names]}


@router.get("/models/{model_id}")
async def model(model_id: str, s: Service = Depends(get_service)) -> dict[str, Any]:
    """One collection, as OpenAI's retrieve-model call returns it (404 when there is no such collection)."""
    name, _ = await run_in_threadpool(s.answerer, model_id)
    return _model(name, int(time.time()))


async def _task_reply(s: Service, req: ChatRequest, text: str, kind: str, params: Any) -> Any:
    """A client task prompt answered by the LLM alone: no retrieval, no askdocs prompt, no sources."""
    rid, created, model_name = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), req.model or "askdocs"
    if isinstance(s.generator, NoGenerator):
        content, finish, use = "{}", "stop", {"prompt_tokens": 0, "completion_tokens": 0}
    else:  # the LLM's time is bounded as for answers: a slot (max_pending_answers) and request_timeout_s
        slot = s.admit()
        try:
            gen = await asyncio.wait_for(
                s.agenerate([{"role": "user", "content": text}], params), s.settings.request_timeout_s
            )
        except TimeoutError:
            raise HTTPException(504, f"timed out after {s.settings.request_timeout_s:g} s") from None
        finally:
            slot.release()
        content, finish = gen.text, "length" if gen.finish_reason == "length" else "stop"
        use = {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens}
    use["total_tokens"] = use["prompt_tokens"] + use["completion_tokens"]
    if not req.stream:
        message = {"role": "assistant", "content": content}
        return {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": model_name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": use,
            "askdocs_task": kind,
        }
    fmt = OpenAIChunks(rid, created, model_name)

    async def events() -> Any:
        yield fmt.piece(content)
        last = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model_name}
        last |= {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": use}
        yield {"data": json.dumps(last, ensure_ascii=False)}
        yield {"data": "[DONE]"}

    return EventSourceResponse(events())


@router.post("/chat/completions")
async def chat_completions(req: ChatRequest, request: Request, s: Service = Depends(get_service)) -> Any:
    """The last user message is the question; earlier user/assistant turns are the chat history.

    Client system messages are ignored: askdocs's own system prompt keeps answers grounded.  The
    sources come back in an extra top-level ``sources`` field (and in the final stream chunk), and
    as a "Sources" footer in the content unless ``askdocs.sources_footer`` or the server turns it off.
    With no LLM (``--llm-backend none``) the content is the passages themselves.
    """
    if (why := req.unsupported()) is not None:
        raise HTTPException(400, why)
    max_tokens = req.max_completion_tokens or req.max_tokens
    check_chat(s.settings, [(f"messages.{i}.content", m.text()) for i, m in enumerate(req.messages)], max_tokens)
    collection, answerer = s.answerer(req.model)
    turns = chat_history(req.messages)
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise HTTPException(400, "the last message must be a non-empty user message (the question)")
    params = answerer.params(
        temperature=req.temperature,
        top_p=req.top_p,
        max_tokens=max_tokens,
        seed=req.seed,
        stop=tuple(req.stops()) or None,
    )
    if (kind := client_task(turns[-1]["content"])) is not None:
        return await _task_reply(s, req, turns[-1]["content"], kind, params)
    opts = req.askdocs or ChatOptions()
    footer = s.settings.sources_footer if opts.sources_footer is None else opts.sources_footer
    no_llm = isinstance(s.generator, NoGenerator)
    question, history = turns[-1]["content"], turns[:-1]
    slot = s.admit()
    try:
        prep = await run_in_threadpool(s.prepare, collection, question, history, params, opts.search_options())
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not req.stream:
            try:
                answer = await asyncio.wait_for(
                    s.answer_while_connected(request, collection, prep, params), s.settings.request_timeout_s
                )
            except TimeoutError:
                raise HTTPException(504, f"timed out after {s.settings.request_timeout_s:g} s") from None
            finally:
                slot.release()
            return completion(rid, created, collection, answer, extra_content(answer, footer=footer, no_llm=no_llm))
    except BaseException:
        slot.release()
        raise
    fmt = OpenAIChunks(rid, created, collection, lambda a: extra_content(a, footer=footer, no_llm=no_llm))
    return stream_answer(s, collection, prep, params, fmt, lambda m: public(m, s.settings), slot)
