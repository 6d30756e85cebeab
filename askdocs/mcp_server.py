"""MCP: askdocs as tools for agents (Claude Desktop, IDEs, any Model Context Protocol client).

Built on the official ``mcp`` SDK (2.x, where FastMCP is now called ``MCPServer``), which derives
each tool's JSON schema from the type hints and docstrings below and speaks stdio or streamable
HTTP.  ``build_mcp`` makes the app without running it: ``askdocs mcp`` runs it over stdio with its own
index and LLM (``LocalTools``); ``askdocs serve`` mounts its streamable HTTP app at ``/mcp`` over the
server's already-loaded models (``askdocs.server.app``).

The index and the LLM load on the first tool call, not at start-up: an MCP client starts its
servers eagerly and lists their tools before anyone asks anything.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from askdocs.errors import AskdocsError
from askdocs.retrieve import SearchOptions

if TYPE_CHECKING:
    from askdocs.answer import Answer, Answerer
    from askdocs.config import Settings
    from askdocs.index import Index

INSTRUCTIONS = (
    "askdocs answers questions from an indexed collection of documents and cites its sources. "
    "Use `search` to find passages (each with its source path and section), `ask` for an answer "
    "written from the passages with [n] citations, and `list_documents` to see what is indexed."
)


class Tools(Protocol):
    """What the MCP tools call: its own index and LLM for ``askdocs mcp``, the server's for ``serve``'s /mcp."""

    def search(self, query: str, options: SearchOptions) -> list[Any]: ...
    def ask(self, question: str, options: SearchOptions) -> Answer: ...
    def documents(self) -> list[Any]: ...
    def close(self) -> None: ...


class LocalTools:
    """The index and answerer of ``askdocs mcp``, made once on first use and shared by every tool call.

    One lock: Milvus Lite and the in-process LLMs are not meant to be driven from two threads at once,
    and the SDK runs synchronous tools on worker threads.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self._index: Index | None = None
        self._answerer: Answerer | None = None

    def _get_index(self) -> Index:
        if self._index is None:
            from askdocs.index import Index

            self._index = Index(self.settings)
        return self._index

    def _get_answerer(self) -> Answerer:
        if self._answerer is None:
            from askdocs.answer import Answerer
            from askdocs.generate import make_generator

            self._answerer = Answerer(self._get_index(), make_generator(self.settings))
        return self._answerer

    def search(self, query: str, options: SearchOptions) -> list[Any]:
        with self.lock:
            return self._get_index().search(query, options)

    def ask(self, question: str, options: SearchOptions) -> Answer:
        with self.lock:
            return self._get_answerer().ask(question, search=options)

    def documents(self) -> list[Any]:
        with self.lock:
            index = self._get_index()
            index.require_collection()
            return index.documents()

    def close(self) -> None:
        if self._index is not None:
            self._index.close()


@contextmanager
def _tool_errors() -> Iterator[None]:
    """askdocs's one-line errors reach the client as the tool's error text (the SDK hides other exceptions)."""
    try:
        yield
    except AskdocsError as exc:
        raise ToolError(str(exc)) from None


def _hit(rank: int, hit: Any) -> dict[str, Any]:
    return {
        "n": rank,
        "source": hit.source,
        "title": hit.title,
        "section": hit.section,
        "score": round(float(hit.score), 4),
        "text": hit.text,
    }


def build_mcp(settings: Settings | None = None, tools: Tools | None = None, **server_options: Any) -> MCPServer:
    """The askdocs MCP app over one collection; run it (``.run("stdio")``) or mount its HTTP app.

    ``tools`` is what the tools call (default: a ``LocalTools`` over ``settings``); ``server_options``
    go to ``MCPServer`` (for example ``log_level``).
    """
    from askdocs.config import load_settings

    parts = tools or LocalTools(settings or load_settings())
    app = MCPServer("askdocs", instructions=INSTRUCTIONS, **server_options)

    @app.tool()
    def search(
        query: str, k: int = 5, mode: Literal["dense", "bm25", "hybrid"] | None = None, filter: str = ""
    ) -> list[dict[str, Any]]:
        """Find the passages of the indexed documents that best match a query, best first.

        Args:
            query: what to look for, in natural language or keywords.
            k: how many passages to return (1-50).
            mode: dense (by meaning), bm25 (by keywords) or hybrid (both); default: the configured mode.
            filter: optional Milvus filter over source, title, section, e.g. 'source like "guide/%"'.
        """
        if not 1 <= k <= 50:
            raise ToolError("k must be between 1 and 50")
        with _tool_errors():
            hits = parts.search(query, SearchOptions(k=k, mode=mode, filter=filter))
        return [_hit(i, h) for i, h in enumerate(hits, 1)]

    @app.tool()
    def ask(question: str, k: int | None = None) -> dict[str, Any]:
        """Answer a question from the indexed documents, citing them as [n].

        Returns the answer, the cited sources and every passage the answer was written from, best first:
        passage [1] is the most relevant.
        With the LLM backend `none`, the answer is empty and the passages are the result.

        Args:
            question: the question, in natural language.
            k: how many passages to give the LLM; default: the configured top_k.
        """
        with _tool_errors():
            answer = parts.ask(question, SearchOptions(k=k))
        return {
            "answer": answer.answer,
            "citations": [{"n": c.n, "source": c.source, "section": c.section} for c in answer.citations],
            "passages": [
                {"n": c.n, "source": c.source, "section": c.section, "score": round(c.score, 4), "text": c.text}
                for c in answer.contexts  # best first, as in `askdocs ask`: passage n is the [n] the answer cites
            ],
            "finish_reason": answer.finish_reason,
        }

    @app.tool()
    def list_documents() -> list[dict[str, Any]]:
        """List the indexed documents: source path (the name `search` results use; a path that two ingested
        folders both hold is shown behind its folder's name, e.g. colA/readme.md), title and chunk count."""
        with _tool_errors():
            docs = parts.documents()
        return [{"source": d.source, "title": d.title, "chunks": d.chunks} for d in docs]

    app.askdocs_parts = parts  # type: ignore[attr-defined]  # so a host can close the index on shutdown
    return app


def run_stdio(settings: Settings) -> None:
    """``askdocs mcp``: serve the tools over stdin/stdout until the client closes them."""
    app = build_mcp(settings)
    try:
        app.run("stdio")
    finally:
        app.askdocs_parts.close()  # type: ignore[attr-defined]
