"""App assembly: the lifespan that holds the ``Service``, auth, CORS, metrics, and errors as JSON.

Errors become HTTP statuses here and nowhere else: an ``AskdocsError`` carries its own ``status``
(bad input 400, not found 404, the LLM failing 502 or unreachable 503, the store unavailable 503),
so a route raises what went wrong and never picks a status for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from askdocs.config import Settings
from askdocs.embed import Embedder
from askdocs.errors import AskdocsError
from askdocs.generate import Generator
from askdocs.server.embeddings_api import router as embeddings_router
from askdocs.server.guards import RequestLimits, key_ok, public
from askdocs.server.openai_api import router as openai_router
from askdocs.server.rest_api import router as rest_router
from askdocs.server.service import Service, get_service
from askdocs.server.web import mount_static
from askdocs.server.web import router as web_router

log = logging.getLogger(__name__)

# Methods a metric may name; anything else a client sends (before auth, too) is "other", so arbitrary
# methods cannot grow the label set without bound (F7).
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

_KINDS = {
    401: "authentication_error",
    404: "not_found_error",
    502: "upstream_error",
    503: "unavailable_error",
}


def _error(
    status: int, message: str, kind: str | None = None, param: str | None = None, code: str | None = None
) -> JSONResponse:
    """OpenAI's error object, the one shape of every error on every route (clients parse one thing)."""
    kind = kind or _KINDS.get(status, "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def _install_error_handlers(app: FastAPI, settings: Settings) -> None:
    """Every error is JSON ``{"error": {"message", "type", "param", "code"}}`` with its status, never a traceback.

    Starlette's own ``HTTPException`` (unknown route 404, wrong method 405, a bad multipart body) is
    handled too, and bad requests are 400 as OpenAI answers them, not FastAPI's 422.
    """

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        resp = _error(exc.status_code, str(exc.detail), param=getattr(exc, "param", None))
        if exc.headers:
            resp.headers.update(exc.headers)
        return resp

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        parts = [f"{_loc(e['loc']) or 'body'}: {e['msg']}" for e in errors]
        first = errors[0] if errors else {}
        return _error(
            400,
            "; ".join(parts)[:2000] or "invalid request",
            param=_loc(first.get("loc", ())) or None,
            code=first.get("type"),
        )

    @app.exception_handler(RecursionError)
    async def _deep(_: Request, exc: RecursionError) -> JSONResponse:
        return _error(400, "request body is nested too deeply")

    @app.exception_handler(AskdocsError)
    async def _askdocs(_: Request, exc: AskdocsError) -> JSONResponse:
        kind = _KINDS.get(exc.status, "askdocs_error")
        return _error(exc.status, public(str(exc), settings), kind)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _error(500, f"internal error ({type(exc).__name__}); see the server log", "server_error")


def _require_key(request: Request) -> None:
    """With ``api_key`` set, ``Authorization: Bearer KEY`` (compared in constant time)."""
    if not key_ok(request.headers.get("authorization", ""), request.app.state.settings):
        raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})


def _loc(loc: Any) -> str:
    return ".".join(str(x) for x in loc if x != "body")


async def _measure(request: Request, call_next: Any) -> Response:
    """Requests and latency per route (the route's template, so ids do not make new series)."""
    t0 = time.perf_counter()
    response = await call_next(request)
    path = getattr(request.scope.get("route"), "path", "other")
    s: Service | None = getattr(request.app.state, "service", None)
    seconds = time.perf_counter() - t0
    if s is not None:
        method = request.method if request.method in _METHODS else "other"
        s.metrics.requests.labels(path, method, str(response.status_code)).inc()
        s.metrics.latency.labels(path).observe(seconds)
    # the request log (`askdocs serve` shows askdocs's INFO lines); a stream's time is to its first byte
    log.info("%s %s %d %.3fs", request.method, request.url.path, response.status_code, seconds)
    return response


def uvicorn_config(app: FastAPI, settings: Settings, **overrides: Any) -> Any:
    """How ``askdocs serve`` runs ``app``: h11, whose request-head bound is ``max_header_bytes``."""
    import uvicorn

    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "access_log": False,
        "http": "h11",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        # SIGTERM: stop accepting, give running requests the grace, then cancel them (their generation
        # stops with them); without it a streaming answer held the server for minutes.
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
    }
    return uvicorn.Config(app, **{**options, **overrides})


def create_app(
    settings: Settings | None = None, *, generator: Generator | None = None, embedder: Embedder | None = None
) -> FastAPI:
    """The ASGI app.  ``generator``/``embedder`` let tests and embedders share already-loaded models."""
    from askdocs.config import load_settings

    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = await run_in_threadpool(Service, settings, generator, embedder)
        if settings.watch:
            app.state.service.start_watch(settings.watch)
        async with mcp[1]() if mcp is not None else nullcontext():
            yield
        service, app.state.service = app.state.service, None
        service.close()

    app = FastAPI(
        title="askdocs",
        version="0.1.0",
        description="Answers from your own documents, with sources.  OpenAI-compatible at /v1.",
        lifespan=lifespan,
        docs_url=None,  # served by askdocs.server.web from vendored files: FastAPI's loads a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.service = None
    mcp = None
    if settings.mcp:  # MCP tools over streamable HTTP, calling this app's Service
        from askdocs.server.mcp_http import mcp_route

        mcp = mcp_route(settings, app.state)
    _install_error_handlers(app, settings)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"]
        )
    app.middleware("http")(_measure)
    app.add_middleware(RequestLimits, settings=settings)
    auth = [Depends(_require_key)]

    @app.get("/health", tags=["ops"])
    async def health(s: Service = Depends(get_service)) -> dict[str, Any]:
        return {"status": "ok", "collection": settings.collection, "llm": s.generator.name}

    @app.get("/metrics", tags=["ops"], dependencies=auth)
    async def metrics(s: Service = Depends(get_service)) -> Response:
        return Response(generate_latest(s.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(openai_router, dependencies=auth)
    app.include_router(embeddings_router, dependencies=auth)
    app.include_router(rest_router, dependencies=auth)
    if mcp is not None:
        app.router.routes.append(mcp[0])
    app.include_router(web_router)
    mount_static(app)
    return app
