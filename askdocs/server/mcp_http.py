"""``/mcp``: askdocs's MCP tools over streamable HTTP, inside ``serve``, over the server's loaded models.

The tools are the same as ``askdocs mcp``'s (``askdocs.mcp_server.build_mcp``); here they call the
``Service``, so they share its embedder, its generator (through the micro-batcher), its locks and its
one Milvus Lite client, instead of loading a second copy of each.  The SDK's session manager needs its
own task group for the server's lifetime: ``lifespan`` runs it inside the app's.

The SDK's own bearer-auth wiring expects an OAuth authorization server; askdocs has one static key,
so a tiny ASGI guard checks it the way every other route does (``keys.key_ok``).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from askdocs.answer import Answer
from askdocs.config import Settings
from askdocs.errors import AskdocsError
from askdocs.mcp_server import build_mcp
from askdocs.retrieve import SearchOptions
from askdocs.server.guards import key_ok

PATH = "/mcp"


class ServiceTools:
    """``mcp_server.Tools`` over the running server's ``Service`` (read from ``app.state`` per call)."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def _service(self) -> Any:
        service = self._state.service
        if service is None:
            raise AskdocsError("the server is starting or stopping; retry in a moment")
        return service

    def search(self, query: str, options: SearchOptions) -> list[Any]:
        return self._service().search(query, options)

    def ask(self, question: str, options: SearchOptions) -> Answer:
        s = self._service()
        collection = s.settings.collection
        params = s.answerers[collection].params()
        prep = s.prepare(collection, question, [], params, options)
        t0 = time.perf_counter()
        gen = s.generate(prep.prompt.messages, params)
        return s.finish(collection, prep, gen, time.perf_counter() - t0)

    def documents(self) -> list[Any]:
        index = self._service().index
        index.require_collection()
        return index.documents()

    def close(self) -> None:  # the service owns the models
        pass


class _KeyGuard:
    """Refuse requests without the server's API key (when one is set), as a JSON 401 like the other routes."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if scope["type"] == "http" and not key_ok(headers.get("authorization", ""), self.settings):
            error = {"message": "missing or wrong API key", "type": "authentication_error", "param": None, "code": None}
            body = json.dumps({"error": error})
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
                }
            )
            await send({"type": "http.response.body", "body": body.encode()})
            return
        await self.app(scope, receive, send)


def mcp_route(settings: Settings, state: Any) -> tuple[Route, Any]:
    """The ``/mcp`` route and a lifespan context that runs the MCP session manager."""
    server = build_mcp(settings, ServiceTools(state))
    starlette_app = server.streamable_http_app(streamable_http_path=PATH, host=settings.host)
    endpoint = starlette_app.routes[0].endpoint  # the SDK's StreamableHTTPASGIApp for PATH

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return Route(PATH, endpoint=_KeyGuard(endpoint, settings), methods=["GET", "POST", "DELETE"]), lifespan
