"""The REST API under ``/api``: search, ask (SSE), documents, ingest jobs, info."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, UploadFile
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from askdocs.errors import DocumentNotFoundError, NotFoundError
from askdocs.server.guards import check_chat, confine, public, save_uploads
from askdocs.server.protocol import AskEvents, AskRequest, PathsRequest, SearchRequest, chat_history, stream_answer
from askdocs.server.service import Service, get_service

router = APIRouter(prefix="/api", tags=["rest"])


@router.get("/info")
async def info(s: Service = Depends(get_service)) -> dict[str, Any]:
    st = await run_in_threadpool(s.index.status)
    return {
        "collection": st.collection,
        "embed_model": st.model,
        "llm": s.generator.name,
        "documents": st.documents,
        "chunks": st.chunks,
        "auth": bool(s.settings.api_key),
    }


@router.post("/search")
async def search(req: SearchRequest, s: Service = Depends(get_service)) -> dict[str, Any]:
    check_chat(s.settings, [("query", req.query)], None)
    hits = await run_in_threadpool(s.search, req.query, req.search_options())
    return {"query": req.query, "results": [h.to_dict() for h in hits]}


@router.post("/ask")
async def ask(req: AskRequest, s: Service = Depends(get_service)) -> EventSourceResponse:
    """SSE: ``sources`` first, then ``token`` events, then ``done`` with the whole answer."""
    texts = [("question", req.question)] + [(f"history.{i}.content", m.text()) for i, m in enumerate(req.history)]
    check_chat(s.settings, texts, req.max_tokens)
    collection = s.settings.collection
    params = s.answerers[collection].params(max_tokens=req.max_tokens, temperature=req.temperature)
    history = chat_history(req.history)
    slot = s.admit()
    try:
        prep = await run_in_threadpool(s.prepare, collection, req.question, history, params, req.search_options())
    except BaseException:
        slot.release()
        raise
    return stream_answer(s, collection, prep, params, AskEvents(), lambda m: public(m, s.settings), slot)


@router.get("/documents")
async def documents(s: Service = Depends(get_service)) -> dict[str, Any]:
    docs = await run_in_threadpool(s.index.documents)
    return {"documents": [{**d.__dict__, "root": public(d.root, s.settings)} for d in docs]}


@router.delete("/documents/{source:path}")
async def delete_document(source: str, s: Service = Depends(get_service)) -> dict[str, Any]:
    n = await run_in_threadpool(s.delete_document, source)
    if n == 0:
        raise DocumentNotFoundError(f"no document {source!r}")
    return {"deleted": source, "chunks": n}


_INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["files"],
                }
            },
            "application/json": {"schema": PathsRequest.model_json_schema()},
        },
    }
}


@router.post("/ingest", status_code=202, openapi_extra=_INGEST_BODY)
async def ingest(request: Request, s: Service = Depends(get_service)) -> dict[str, Any]:
    """Multipart upload (``files`` fields), or JSON ``{"paths": [...]}`` inside the operator's roots.

    Uploads that cannot be ingested (unsupported type, too large, ...) are listed in ``rejected``
    (here and in the job) while the rest are ingested; only an upload of nothing but such files fails.
    """
    settings = s.settings
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            body = PathsRequest.model_validate(await request.json())
        except (ValueError, json.JSONDecodeError) as e:
            raise HTTPException(400, f"invalid body: {str(e).splitlines()[0]}") from None
        paths = confine(body.paths, settings.ingest_roots)
        rejected: list[dict[str, Any]] = []
    elif ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=settings.max_upload_files + 1, max_fields=settings.max_form_fields)
        files = [f for f in form.getlist("files") if isinstance(f, UploadFile) or hasattr(f, "filename")]
        paths, rejected = await save_uploads(files, settings)
    else:
        raise HTTPException(415, "send multipart/form-data with 'files', or JSON {\"paths\": [...]}")
    job = s.start_ingest(paths, rejected)
    return {"job": job.id, "rejected": job.rejected}


@router.get("/jobs/{job_id}")
async def job(job_id: str, s: Service = Depends(get_service)) -> dict[str, Any]:
    j = s.jobs.get(job_id)
    if j is None:
        raise NotFoundError(f"no job {job_id!r}")
    return j.to_dict()
