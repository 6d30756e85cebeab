"""`askdocs mcp` through the official MCP SDK's own client over stdio, on the bundled sample.

The server is a real subprocess (`python -m askdocs.cli mcp`) over a real Milvus Lite file,
with the packaged MiniLM; `ask` runs with the `none` backend (passages only) and with the
packaged SmolLM2 (`local`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from servers import free_port

from askdocs import Index

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "milvus-docs"


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory, embedder) -> str:
    db = str(tmp_path_factory.mktemp("mcp") / "sample.db")
    with Index(milvus_uri=db, embedder=embedder) as ix:  # closed: the server process must own the Lite file
        assert ix.ingest(SAMPLE).chunks > 100
    return db


def _params(db: str, *args: str, **env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "askdocs.cli", "mcp", "--uri", db, *args],
        env={**os.environ, "ASKDOCS_EMBED_DEVICE": "cpu", **env},
    )


async def _session(params: StdioServerParameters, work) -> object:
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return await work(session)


def _payload(result) -> object:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        data = result.structured_content
        return data.get("result", data) if isinstance(data, dict) and set(data) == {"result"} else data
    return json.loads(result.content[0].text)


def test_tools_search_and_list_documents_with_the_none_backend(sample_db: str) -> None:
    async def work(session: ClientSession) -> dict:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        out = {"tools": tools}
        out["search"] = await session.call_tool("search", {"query": "What do the parameters of HNSW mean?", "k": 3})
        out["bm25"] = await session.call_tool("search", {"query": "efConstruction", "k": 2, "mode": "bm25"})
        out["docs"] = await session.call_tool("list_documents", {})
        out["ask"] = await session.call_tool("ask", {"question": "How do I install Milvus Lite?"})
        out["bad"] = await session.call_tool("search", {"query": "x", "k": 0})
        out["badfilter"] = await session.call_tool("search", {"query": "x", "filter": "no_such_field == 1"})
        return out

    out = anyio.run(_session, _params(sample_db, "--llm-backend", "none"), work)
    assert set(out["tools"]) == {"search", "ask", "list_documents"}
    schema = out["tools"]["search"].input_schema
    assert schema["required"] == ["query"] and {"k", "mode", "filter"} <= set(schema["properties"])
    assert "passages" in (out["tools"]["search"].description or "")

    hits = _payload(out["search"])
    assert [h["n"] for h in hits] == [1, 2, 3]
    assert any("HNSW" in h["text"] for h in hits), hits
    assert hits[0]["score"] >= hits[-1]["score"] and hits[0]["text"]
    assert any("efConstruction" in h["text"] for h in _payload(out["bm25"]))

    docs = _payload(out["docs"])
    on_disk = {p.relative_to(SAMPLE).as_posix() for p in SAMPLE.rglob("*.md")}
    assert {d["source"] for d in docs} == on_disk and all(d["chunks"] > 0 for d in docs)

    answer = _payload(out["ask"])
    assert answer["answer"] == ""  # no LLM: the passages are the result
    assert answer["passages"] and any("milvus" in p["text"].lower() for p in answer["passages"])
    assert [p["score"] for p in answer["passages"]] == sorted((p["score"] for p in answer["passages"]), reverse=True)
    assert [p["n"] for p in answer["passages"]] == list(range(1, len(answer["passages"]) + 1)), "[1] is the best"

    assert out["bad"].is_error and "between 1 and 50" in out["bad"].content[0].text
    bad_filter = out["badfilter"].content[0].text
    # Milvus Lite 2.5 names no field (2.4 said "unknown field 'no_such_field'"): the expression is refused, one line
    assert out["badfilter"].is_error and "invalid parameter" in bad_filter and "Traceback" not in bad_filter


def test_ask_with_the_packaged_local_llm(sample_db: str) -> None:
    async def work(session: ClientSession):
        return await session.call_tool("ask", {"question": "What do the parameters of HNSW mean?", "k": 3})

    params = _params(sample_db, "--llm-backend", "local", ASKDOCS_MAX_TOKENS="24", ASKDOCS_TEMPERATURE="0")
    answer = _payload(anyio.run(_session, params, work))
    assert answer["answer"].strip()
    assert [p["n"] for p in answer["passages"]] == [1, 2, 3]  # best first, numbered so
    assert answer["finish_reason"] in ("stop", "length")
    for c in answer["citations"]:
        assert c["n"] in {p["n"] for p in answer["passages"]}


def test_list_documents_on_a_missing_collection_is_a_tool_error(tmp_path: Path) -> None:
    async def work(session: ClientSession):
        return await session.call_tool("list_documents", {})

    result = anyio.run(_session, _params(str(tmp_path / "empty.db"), "--llm-backend", "none"), work)
    assert result.is_error and "askdocs ingest" in result.content[0].text


# --------------------------------------------------------------------------- /mcp under `askdocs serve`


def test_serve_mounts_mcp_behind_the_api_key_and_keeps_a_watched_folder_in_sync(tmp_path: Path) -> None:
    """`askdocs serve --watch DIR`: the SDK's streamable HTTP client at /mcp sees files come and go."""
    import subprocess
    import time

    import httpx
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "okapi.md").write_text("# Okapi\n\nThe okapi lever tunes the flux capacitor of the watch test.\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "ASKDOCS_EMBED_DEVICE": "cpu", "ASKDOCS_API_KEY": "s3cret"}
    cmd = [sys.executable, "-m", "askdocs.cli", "serve", "--uri", str(tmp_path / "w.db"), "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--llm-backend", "none", "--watch", str(notes)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        assert httpx.post(f"{base}/mcp", json={}).status_code == 401  # the same key as /v1 and /api

        async def sources(session: ClientSession) -> set[str]:
            result = await session.call_tool("list_documents", {})
            return {d["source"] for d in _payload(result)} if not result.is_error else set()

        async def work() -> dict:
            client = create_mcp_http_client(headers={"Authorization": "Bearer s3cret"})
            async with (
                client,
                streamable_http_client(f"{base}/mcp", http_client=client) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                out: dict = {"tools": {t.name for t in (await session.list_tools()).tools}}
                for _ in range(300):  # the start-up sync runs in the background
                    if "okapi.md" in await sources(session):
                        break
                    await anyio.sleep(0.2)
                out["first"] = await sources(session)
                out["hits"] = _payload(await session.call_tool("search", {"query": "okapi lever flux", "k": 1}))
                (notes / "zebra.md").write_text("# Zebra\n\nZebra stripes confuse the watch test's flies.\n")
                (notes / "okapi.md").unlink()
                for _ in range(300):
                    if await sources(session) == {"zebra.md"}:
                        break
                    await anyio.sleep(0.2)
                out["after"] = await sources(session)
                return out

        out = anyio.run(work)
        assert out["tools"] == {"search", "ask", "list_documents"}
        assert out["first"] == {"okapi.md"}
        assert out["hits"][0]["source"] == "okapi.md"
        assert out["after"] == {"zebra.md"}
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert f"MCP {base}/mcp" in stderr and f"keeping {notes} in sync" in stderr
    assert "watch sync" in stderr  # the server logs its syncs
    assert "POST /mcp 200" in stderr and "GET /health 200" in stderr  # and its requests
