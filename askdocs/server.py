"""Serve: an OpenAI-compatible RAG API, a REST API and the web page, with FastAPI.

One ``Service`` loads the embedder and the generator once and shares them
across requests.  Retrieval is short and runs under a lock per collection
(Milvus Lite's client is not documented as thread-safe).  Generation is the
long part and is never serialized behind a lock when the engine can batch:

* ``openai`` backend (a vLLM server behind ``--llm-url``): requests go out
  concurrently and the server's continuous batching schedules them together;
* in-process backends (``vllm``, ``local``): a micro-batcher gathers the
  requests that arrive while the engine is busy and hands them to the engine
  in one ``generate`` call, so 50 concurrent users cost about one batch.

Streaming on the ``local`` backend streams token by token (transformers'
streamer); vLLM's offline engine has no token stream, so in-process vLLM
streams each answer as one piece.  For token streaming with vLLM, serve the
model with vLLM's own server and point ``--llm-url`` at it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from askdocs.answer import Answer, Answerer, Prepared
from askdocs.config import SearchMode, Settings
from askdocs.embed import Embedder
from askdocs.errors import AskdocsError
from askdocs.generate import Generator, SamplingParams, make_generator, resolve_backend
from askdocs.generate.base import Generation, Message
from askdocs.generate.none import NoGenerator
from askdocs.index import Index
from askdocs.retrieve import Condition, filter_expression

log = logging.getLogger(__name__)

WEB = Path(__file__).resolve().parent / "web"
UPLOAD_SUFFIXES = {".md", ".markdown", ".mdx", ".txt", ".text", ".rst", ".html", ".htm", ".pdf"}
UPLOAD_TYPES = {
    "",
    "application/octet-stream",
    "application/pdf",
    "application/xhtml+xml",
    "text/markdown",
    "text/x-markdown",
    "text/plain",
    "text/html",
    "text/x-rst",
    "text/prs.fallenstein.rst",
}


# --------------------------------------------------------------------------- generation pool


class MicroBatcher:
    """Hands concurrent requests to an in-process engine together, in one ``generate`` call.

    Requests that arrive while a batch is running wait for the next one, so the batch size follows
    the load with no tuning; requests with different sampling parameters go in separate calls.
    """

    def __init__(self, generator: Generator, max_batch: int = 64, gather_s: float = 0.01) -> None:
        self.generator = generator
        self.max_batch = max_batch
        self.gather_s = gather_s
        self._queue: queue.Queue[tuple[Sequence[Message], SamplingParams, Future[Generation]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="askdocs-batcher", daemon=True)
        self._thread.start()
        self.batches: list[int] = []  # sizes, for /metrics and tests

    def submit(self, messages: Sequence[Message], params: SamplingParams) -> Future[Generation]:
        fut: Future[Generation] = Future()
        self._queue.put((messages, params, fut))
        return fut

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + self.gather_s
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            groups: dict[SamplingParams, list[tuple[Sequence[Message], Future[Generation]]]] = {}
            for messages, params, fut in batch:
                groups.setdefault(params, []).append((messages, fut))
            for params, items in groups.items():
                self.batches.append(len(items))
                try:
                    gens = self.generator.generate([m for m, _ in items], params)
                except BaseException as e:  # every waiter learns of the failure
                    for _, fut in items:
                        fut.set_exception(e)
                    continue
                for (_, fut), gen in zip(items, gens, strict=True):
                    fut.set_result(gen)

    def close(self) -> None:
        self._queue.put(None)


# --------------------------------------------------------------------------- ingest jobs


@dataclass
class Job:
    id: str
    state: Literal["queued", "running", "done", "failed"] = "queued"
    files_total: int = 0
    files_done: int = 0
    chunks: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    report: dict[str, Any] | None = None
    error: str | None = None

    # ProgressSink: the ingest reports here, the API reads it back
    def start(self, total_files: int) -> None:
        self.files_total = total_files

    def file_done(self, source: str) -> None:
        self.files_done += 1

    def chunks_written(self, n: int) -> None:
        self.chunks += n

    def failed(self, path: str, reason: str) -> None:
        self.failures.append({"path": Path(path).name, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "files_total": self.files_total,
            "files_done": self.files_done,
            "chunks": self.chunks,
            "failures": self.failures,
        }
        if self.report is not None:
            out["report"] = self.report
        if self.error is not None:
            out["error"] = self.error
        return out


# --------------------------------------------------------------------------- the service


class Service:
    """What the server holds: one embedder, one generator, an index per collection, jobs, metrics."""

    def __init__(self, settings: Settings, generator: Generator | None = None, embedder: Embedder | None = None):
        self.settings = settings
        self.index = Index(settings, embedder=embedder)
        self.embedder: Embedder | None = self.index.embedder()  # loaded now, not on the first question
        self.backend = "custom" if generator is not None else resolve_backend(settings)
        self.generator = generator if generator is not None else make_generator(settings)
        self.answerers: dict[str, Answerer] = {settings.collection: Answerer(self.index, self.generator)}
        self.locks: dict[str, threading.Lock] = {settings.collection: threading.Lock()}
        in_process = self.backend in ("vllm", "local", "custom") and not isinstance(self.generator, NoGenerator)
        # vLLM's scheduler gains throughput from wide batches.  transformers on a CPU does not (measured:
        # 16 answers took 67 s one by one, 63 s in batches of 8, 70 s as one batch of 16), so there a
        # narrow batch only keeps the first answers from waiting for the last.
        width = 256 if self.backend == "vllm" else 4
        self.batcher = MicroBatcher(self.generator, max_batch=width) if in_process else None
        self.stream_tokens = self.backend != "vllm"
        self.jobs: dict[str, Job] = {}
        self._ingest_lock = threading.Lock()  # one writer: Milvus Lite has a single writer anyway
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "askdocs_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram("askdocs_request_seconds", "HTTP request latency", ["route"], registry=self.registry)
        self.stages = Histogram(
            "askdocs_stage_seconds",
            "Time per pipeline stage",
            ["stage"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.tokens = Counter("askdocs_tokens", "LLM tokens", ["kind"], registry=self.registry)

    # collections -------------------------------------------------------------

    def collections(self) -> list[str]:
        names = [self.settings.collection]
        names += [c for c in self.index.store.list_collections() if c != self.settings.collection]
        return names

    def answerer(self, model: str | None) -> tuple[str, Answerer]:
        """The collection a request names as its ``model`` (or the default one)."""
        name = self.settings.collection if model in (None, "", self.generator.name, "askdocs") else str(model)
        if name not in self.answerers:
            if name not in self.collections():
                raise HTTPException(404, f"no collection {name!r}; GET /v1/models lists them")
            ix = Index(self.settings.model_copy(update={"collection": name, "embed_model": None}))
            if self.embedder is not None and ix.model_name == self.embedder.model_name:
                ix._embedder = self.embedder  # share the loaded model
            self.answerers[name] = Answerer(ix, self.generator)
            self.locks[name] = threading.Lock()
        return name, self.answerers[name]

    # questions ---------------------------------------------------------------

    def prepare(
        self,
        collection: str,
        question: str,
        history: Sequence[Message],
        params: SamplingParams,
        k: int | None,
        mode: SearchMode | None,
        filters: Sequence[Condition] = (),
    ) -> Prepared:
        answerer = self.answerers[collection]
        # A follow-up is rewritten by the LLM: through the batcher when generation is in-process.
        query = question
        rewrite_s = 0.0
        if history and not isinstance(self.generator, NoGenerator):
            t0 = time.perf_counter()
            query = answerer.rewrite(history, question, generate=self.generate)
            rewrite_s = time.perf_counter() - t0
        hist = answerer.recent(history)
        with self.locks[collection]:
            prep = answerer.prepare_many(
                [question],
                k=k,
                mode=mode,
                filter=filter_expression(filters),
                histories=[hist],
                queries=[query],
                params=params,
            )[0]
        if history:
            prep.timings["rewrite"] = rewrite_s
        for stage in ("embed", "search", "prompt", "rewrite"):
            if stage in prep.timings:
                self.stages.labels(stage).observe(prep.timings[stage])
        return prep

    def generate(self, messages: Sequence[Message], params: SamplingParams) -> Generation:
        if self.batcher is not None:
            return self.batcher.submit(messages, params).result()
        return self.generator.generate([messages], params)[0]

    def finish(self, collection: str, prep: Prepared, gen: Generation, seconds: float) -> Answer:
        answer = self.answerers[collection].finish(prep, gen, seconds)
        self.stages.labels("generate").observe(seconds)
        self.tokens.labels("prompt").inc(answer.usage.get("prompt_tokens", 0))
        self.tokens.labels("completion").inc(answer.usage.get("completion_tokens", 0))
        return answer

    # ingest ------------------------------------------------------------------

    def start_ingest(self, paths: list[str]) -> Job:
        job = Job(uuid.uuid4().hex[:12])
        self.jobs[job.id] = job

        def work() -> None:
            with self._ingest_lock:
                job.state = "running"
                try:
                    report = self.index.ingest(*paths, progress=job)
                    job.report = _public_report(report.to_dict(), self.settings)
                    job.state = "done"
                except AskdocsError as e:
                    job.error, job.state = str(e), "failed"
                except Exception as e:  # reported to the client without internals
                    log.exception("ingest job %s failed", job.id)
                    job.error, job.state = f"ingest failed: {type(e).__name__}", "failed"

        threading.Thread(target=work, name=f"askdocs-ingest-{job.id}", daemon=True).start()
        return job

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.generator.close()
        for a in self.answerers.values():
            a.index.close()


# --------------------------------------------------------------------------- request / response models


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = ""

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI content parts: keep the text ones
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


FiltersField = Field(
    default_factory=list,
    max_length=16,
    description='Conditions joined with "and", e.g. [{"field": "source", "op": "prefix", "value": "faq/"}].',
)


class RetrievalOptions(BaseModel):
    k: int | None = Field(None, ge=1, le=100)
    mode: SearchMode | None = None
    filters: list[Condition] = FiltersField


class ChatRequest(BaseModel):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    askdocs: RetrievalOptions | None = Field(None, description="askdocs extension: retrieval options.")


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=8000)
    k: int | None = Field(None, ge=1, le=100)
    mode: SearchMode | None = None
    history: list[ChatMessage] = Field(default_factory=list)
    filters: list[Condition] = FiltersField
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=8000)
    k: int | None = Field(None, ge=1, le=100)
    mode: SearchMode | None = None
    filters: list[Condition] = FiltersField


class PathsRequest(BaseModel):
    paths: list[str] = Field(min_length=1, max_length=1000)


def source_dict(c: Any, cited: set[int]) -> dict[str, Any]:
    return {**c.to_dict(), "cited": c.n in cited}


# --------------------------------------------------------------------------- the app


def create_app(
    settings: Settings | None = None, *, generator: Generator | None = None, embedder: Embedder | None = None
) -> FastAPI:
    """The ASGI app.  ``generator``/``embedder`` let tests and embedders share already-loaded models."""
    from askdocs.config import load_settings

    settings = settings or load_settings()
    holder: dict[str, Service] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        holder["svc"] = await run_in_threadpool(Service, settings, generator, embedder)
        yield
        holder.pop("svc").close()

    app = FastAPI(
        title="askdocs",
        version="0.1.0",
        description="Answers from your own documents, with sources.  OpenAI-compatible at /v1.",
        lifespan=lifespan,
    )

    def svc() -> Service:
        return holder["svc"]

    # --- errors as JSON, never a traceback --------------------------------------

    def error(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        kind = {401: "authentication_error", 404: "not_found_error"}.get(exc.status_code, "invalid_request_error")
        resp = error(exc.status_code, str(exc.detail), kind)
        if exc.headers:
            resp.headers.update(exc.headers)
        return resp

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e['loc'] if x != 'body')}: {e['msg']}" for e in exc.errors()]
        return error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(AskdocsError)
    async def _askdocs(_: Request, exc: AskdocsError) -> JSONResponse:
        return error(400, _public(str(exc), settings), "askdocs_error")

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error(500, f"internal error ({type(exc).__name__}); see the server log", "server_error")

    # --- auth, CORS, metrics -------------------------------------------------------

    def require_key(request: Request) -> None:
        key = settings.api_key
        if not key:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), key.encode()):
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )

    @app.middleware("http")
    async def _measure(request: Request, call_next):
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "other")
        if "svc" in holder:
            s = holder["svc"]
            s.requests.labels(path, request.method, str(response.status_code)).inc()
            s.latency.labels(path).observe(time.perf_counter() - t0)
        return response

    auth = [Depends(require_key)]

    # --- plain routes ---------------------------------------------------------------

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, Any]:
        s = svc()
        return {"status": "ok", "collection": settings.collection, "llm": s.generator.name}

    @app.get("/metrics", tags=["ops"], dependencies=auth)
    async def metrics() -> Response:
        return Response(generate_latest(svc().registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/info", tags=["rest"], dependencies=auth)
    async def info() -> dict[str, Any]:
        s = svc()
        st = await run_in_threadpool(s.index.status)
        return {
            "collection": st.collection,
            "embed_model": st.model,
            "llm": s.generator.name,
            "documents": st.documents,
            "chunks": st.chunks,
            "auth": bool(settings.api_key),
        }

    # --- OpenAI-compatible ------------------------------------------------------------

    @app.get("/v1/models", tags=["openai"], dependencies=auth)
    async def models() -> dict[str, Any]:
        names = await run_in_threadpool(svc().collections)
        now = int(time.time())
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": now, "owned_by": "askdocs"} for n in names],
        }

    @app.post("/v1/chat/completions", tags=["openai"], dependencies=auth)
    async def chat_completions(req: ChatRequest) -> Any:
        """The last user message is the question; earlier user/assistant turns are the chat history.

        Client system messages are ignored: askdocs's own system prompt keeps answers grounded.  The
        sources come back in an extra top-level ``sources`` field (and in the final stream chunk).
        """
        s = svc()
        collection, _ = s.answerer(req.model)
        turns = [m for m in req.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user" or not turns[-1].text().strip():
            raise HTTPException(400, "the last message must be a non-empty user message (the question)")
        question = turns[-1].text()
        history = [{"role": m.role, "content": m.text()} for m in turns[:-1]]
        opts = req.askdocs or RetrievalOptions()
        params = s.answerers[collection].params(
            temperature=req.temperature,
            top_p=req.top_p,
            max_tokens=req.max_completion_tokens or req.max_tokens,
            seed=req.seed,
        )
        prep = await run_in_threadpool(
            s.prepare, collection, question, history, params, opts.k, opts.mode, opts.filters
        )
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        model = collection

        if not req.stream:
            t0 = time.perf_counter()
            gen = await _generate(s, prep, params)
            answer = s.finish(collection, prep, gen, time.perf_counter() - t0)
            return _completion(rid, created, model, answer)

        async def events() -> AsyncIterator[dict[str, str]]:
            def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, str]:
                body = {
                    "id": rid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    **extra,
                }
                return {"data": json.dumps(body, ensure_ascii=False)}

            yield chunk({"role": "assistant", "content": ""})
            try:
                answer = None
                async for piece, final in _stream(s, collection, prep, params):
                    if final is not None:
                        answer = final
                    elif piece:
                        yield chunk({"content": piece})
            except AskdocsError as e:
                yield {"data": json.dumps({"error": {"message": _public(str(e), settings), "type": "askdocs_error"}})}
                return
            assert answer is not None
            cited = {c.n for c in answer.citations}
            yield chunk(
                {},
                _finish_reason(answer),
                sources=[source_dict(c, cited) for c in answer.contexts],
                sentences=[c.to_dict() for c in answer.sentences],
                usage=_usage(answer),
            )
            yield {"data": "[DONE]"}

        return EventSourceResponse(events(), ping=15)

    # --- REST ---------------------------------------------------------------------

    @app.post("/api/search", tags=["rest"], dependencies=auth)
    async def search(req: SearchRequest) -> dict[str, Any]:
        s = svc()

        def run() -> list[Any]:
            with s.locks[settings.collection]:
                return s.index.search(req.query, k=req.k, mode=req.mode, filter=filter_expression(req.filters))

        hits = await run_in_threadpool(run)
        return {"query": req.query, "results": [h.to_dict() for h in hits]}

    @app.post("/api/ask", tags=["rest"], dependencies=auth)
    async def ask(req: AskRequest) -> EventSourceResponse:
        """SSE: ``sources`` first, then ``token`` events, then ``done`` with the whole answer."""
        s = svc()
        collection = settings.collection
        history = [{"role": m.role, "content": m.text()} for m in req.history if m.role in ("user", "assistant")]
        params = s.answerers[collection].params(max_tokens=req.max_tokens, temperature=req.temperature)
        prep = await run_in_threadpool(
            s.prepare, collection, req.question, history, params, req.k, req.mode, req.filters
        )

        async def events() -> AsyncIterator[dict[str, str]]:
            contexts = [c.to_dict() for c in prep.contexts]
            yield {"event": "sources", "data": json.dumps({"query": prep.query, "contexts": contexts})}
            try:
                answer = None
                async for piece, final in _stream(s, collection, prep, params):
                    if final is not None:
                        answer = final
                    elif piece:
                        yield {"event": "token", "data": json.dumps({"text": piece}, ensure_ascii=False)}
            except AskdocsError as e:
                yield {"event": "error", "data": json.dumps({"message": _public(str(e), settings)})}
                return
            assert answer is not None
            yield {"event": "done", "data": json.dumps(answer.to_dict(), ensure_ascii=False)}

        return EventSourceResponse(events(), ping=15)

    @app.get("/api/documents", tags=["rest"], dependencies=auth)
    async def documents() -> dict[str, Any]:
        docs = await run_in_threadpool(svc().index.documents)
        return {"documents": [{**d.__dict__, "root": _public(d.root, settings)} for d in docs]}

    @app.delete("/api/documents/{source:path}", tags=["rest"], dependencies=auth)
    async def delete_document(source: str) -> dict[str, Any]:
        s = svc()

        def run() -> int:
            with s._ingest_lock, s.locks[settings.collection]:
                return s.index.delete(source)

        n = await run_in_threadpool(run)
        if n == 0:
            raise HTTPException(404, f"no document {source!r}")
        return {"deleted": source, "chunks": n}

    @app.post("/api/ingest", tags=["rest"], dependencies=auth, status_code=202)
    async def ingest(request: Request) -> dict[str, Any]:
        """Multipart upload (``files`` fields), or JSON ``{"paths": [...]}`` inside the operator's roots."""
        s = svc()
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            try:
                body = PathsRequest.model_validate(await request.json())
            except (ValueError, json.JSONDecodeError) as e:
                raise HTTPException(422, f"invalid body: {str(e).splitlines()[0]}") from None
            paths = _confine(body.paths, settings.ingest_roots)
        elif ctype.startswith("multipart/form-data"):
            form = await request.form(max_files=settings.max_upload_files + 1)
            files = [f for f in form.getlist("files") if isinstance(f, UploadFile) or hasattr(f, "filename")]
            paths = await _save_uploads(files, settings)
        else:
            raise HTTPException(415, "send multipart/form-data with 'files', or JSON {\"paths\": [...]}")
        job = s.start_ingest(paths)
        return {"job": job.id}

    @app.get("/api/jobs/{job_id}", tags=["rest"], dependencies=auth)
    async def job(job_id: str) -> dict[str, Any]:
        j = svc().jobs.get(job_id)
        if j is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return j.to_dict()

    # --- the web page ---------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def index_page() -> Response:
        page = WEB / "index.html"
        if not page.is_file():
            return Response("askdocs API: see /docs", media_type="text/plain")
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    if WEB.is_dir():
        app.mount("/static", StaticFiles(directory=WEB), name="static")

    # keep a reference for tests and embedding applications
    app.state.service = lambda: holder.get("svc")
    return app


# --------------------------------------------------------------------------- helpers


async def _generate(s: Service, prep: Prepared, params: SamplingParams) -> Generation:
    if prep.refusal is not None:  # refused before generation: the generator is not called
        return Generation(prep.refusal, finish_reason="refused")
    if isinstance(s.generator, NoGenerator):
        return Generation("")
    if s.batcher is not None:
        return await asyncio.wrap_future(s.batcher.submit(prep.prompt.messages, params))
    return await run_in_threadpool(lambda: s.generator.generate([prep.prompt.messages], params)[0])


async def _stream(
    s: Service, collection: str, prep: Prepared, params: SamplingParams
) -> AsyncIterator[tuple[str, Answer | None]]:
    """(piece, None) while the answer is written, then ("", answer)."""
    t0 = time.perf_counter()
    if isinstance(s.generator, NoGenerator) or not s.stream_tokens or prep.refusal is not None:
        gen = await _generate(s, prep, params)
        yield gen.text, None
    else:
        ts = s.generator.stream(prep.prompt.messages, params)
        async for piece in iterate_in_threadpool(iter(ts)):
            yield piece, None
        assert ts.result is not None
        gen = ts.result
    yield "", s.finish(collection, prep, gen, time.perf_counter() - t0)


def _public_report(report: dict[str, Any], settings: Settings) -> dict[str, Any]:
    failures = report.get("failures") or []
    report["failures"] = [
        {k: _public(str(v), settings) for k, v in (f.items() if isinstance(f, dict) else {"path": f}.items())}
        for f in failures
    ]
    return report


def _usage(a: Answer) -> dict[str, int]:
    p, c = a.usage.get("prompt_tokens", 0), a.usage.get("completion_tokens", 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _finish_reason(a: Answer) -> str:
    return "length" if a.finish_reason == "length" else "stop"


def _completion(rid: str, created: int, model: str, answer: Answer) -> dict[str, Any]:
    cited = {c.n for c in answer.citations}
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.answer},
                "finish_reason": _finish_reason(answer),
            }
        ],
        "usage": _usage(answer),
        "sources": [source_dict(c, cited) for c in answer.contexts],
        "sentences": [c.to_dict() for c in answer.sentences],
    }


_ABS_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)+[\w.@+-]*")


def _public(message: str, settings: Settings) -> str:
    """Server-side paths outside the ingest roots and the upload folder don't reach clients."""
    allowed = [str(Path(r).resolve()) for r in [*settings.ingest_roots, settings.upload_dir]]

    def hide(m: re.Match[str]) -> str:
        p = m.group(0)
        return p if any(p == a or p.startswith(a + os.sep) for a in allowed) else "<path>"

    return _ABS_PATH.sub(hide, message)


def _within(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def _confine(paths: Sequence[str], roots: Sequence[Path]) -> list[str]:
    """Resolve each requested path, symlinks included, and refuse anything outside the roots."""
    from askdocs.load import discover

    if not roots:
        raise HTTPException(403, "server-side ingest is off: the operator has configured no ingest_roots")
    real_roots = [Path(r).resolve() for r in roots]
    out = []
    for raw in paths:
        if "\x00" in raw:
            raise HTTPException(400, "invalid path")
        p = Path(raw)
        shown = repr(raw) if not p.is_absolute() else f"path #{len(out) + 1}"  # no server paths in replies
        # lexical check first ('..' and foreign absolute paths), then the real path (symlinks)
        candidates = (
            [Path(os.path.normpath(p))] if p.is_absolute() else [Path(os.path.normpath(r / p)) for r in real_roots]
        )
        candidates = [c for c in candidates if _within(c, real_roots)]
        if not candidates:
            raise HTTPException(403, f"{shown} is outside the ingest roots")
        chosen = next((c for c in candidates if c.exists() or c.is_symlink()), None)
        if chosen is None:
            raise HTTPException(404, f"{shown} does not exist inside the ingest roots")
        real = chosen.resolve()
        if not _within(real, real_roots):
            raise HTTPException(403, f"{shown} is outside the ingest roots")
        # a folder may hold symlinks that leave the roots: check every file it would ingest
        for f in discover([real]).files:
            if not _within(f.path.resolve(), real_roots):
                raise HTTPException(403, f"{shown} contains a link that leaves the ingest roots")
        out.append(str(real))
    return out


_SAFE_NAME = re.compile(r"[^\w.\- ]+", re.UNICODE)


async def _save_uploads(files: Sequence[Any], settings: Settings) -> list[str]:
    """Check names, types and sizes, then write each upload whole or not at all."""
    if not files:
        raise HTTPException(400, "no files: send one or more 'files' fields")
    if len(files) > settings.max_upload_files:
        raise HTTPException(413, f"too many files: at most {settings.max_upload_files} per request")
    folder = settings.upload_dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    for f in files:
        name = _SAFE_NAME.sub("_", Path(f.filename or "").name).strip(" .")
        if not name:
            raise HTTPException(400, f"invalid file name {f.filename!r}")
        suffix = Path(name).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise HTTPException(415, f"{name}: unsupported type; send {', '.join(sorted(UPLOAD_SUFFIXES))}")
        ctype = (f.content_type or "").split(";")[0].strip().lower()
        if ctype not in UPLOAD_TYPES:
            raise HTTPException(415, f"{name}: content type {ctype!r} is not a document type")
        data = await f.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, f"{name}: larger than {settings.max_upload_bytes} bytes")
        if suffix == ".pdf" and not data.startswith(b"%PDF"):
            raise HTTPException(415, f"{name}: not a PDF file")
        if suffix != ".pdf" and b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise HTTPException(415, f"{name}: binary content in a text document")
        target = folder / name
        tmp = folder / f".{name}.{uuid.uuid4().hex[:8]}.part"
        tmp.write_bytes(data)
        os.replace(tmp, target)
        written.append(str(target))
    return written


def serve(settings: Settings) -> None:
    """Run the app with uvicorn (what ``askdocs serve`` does)."""
    import uvicorn

    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
