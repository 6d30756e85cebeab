"""The OpenAI-compatible API: ``/v1/models`` lists the collections, ``/v1/chat/completions`` answers.

``model`` names the collection; the sources come back in an extra top-level ``sources`` field
(in the final chunk when streaming); an optional ``askdocs`` field tunes retrieval.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from starlette.concurrency import run_in_threadpool

from askdocs.server.guards import public
from askdocs.server.protocol import ChatRequest, OpenAIChunks, RetrievalOptions, chat_history, completion, stream_answer
from askdocs.server.service import Service, get_service

router = APIRouter(prefix="/v1", tags=["openai"])


@router.get("/models")
async def models(s: Service = Depends(get_service)) -> dict[str, Any]:
    names = await run_in_threadpool(s.collections)
    now = int(time.time())
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": now, "owned_by": "askdocs"} for n in names],
    }


@router.post("/chat/completions")
async def chat_completions(req: ChatRequest, s: Service = Depends(get_service)) -> Any:
    """The last user message is the question; earlier user/assistant turns are the chat history.

    Client system messages are ignored: askdocs's own system prompt keeps answers grounded.  The
    sources come back in an extra top-level ``sources`` field (and in the final stream chunk).
    """
    collection, answerer = s.answerer(req.model)
    turns = chat_history(req.messages)
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise HTTPException(400, "the last message must be a non-empty user message (the question)")
    params = answerer.params(
        temperature=req.temperature,
        top_p=req.top_p,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        seed=req.seed,
    )
    options = (req.askdocs or RetrievalOptions()).search_options()
    prep = await run_in_threadpool(s.prepare, collection, turns[-1]["content"], turns[:-1], params, options)
    rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if not req.stream:
        return completion(rid, created, collection, await s.answer(collection, prep, params))
    fmt = OpenAIChunks(rid, created, collection)
    return stream_answer(s, collection, prep, params, fmt, lambda m: public(m, s.settings))
