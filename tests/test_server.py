"""askdocs serve against the real app: uvicorn on loopback, real Milvus Lite, MiniLM and SmolLM2.

Clients are the ones users have: the openai SDK (streaming and not), httpx for the REST API and SSE.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from servers import Running, free_port

from askdocs.config import Settings
from askdocs.server import create_app

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "milvus-docs"
QUESTION = "What do the parameters of HNSW mean?"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("served") / "docs"
    for rel in ("reference/index.md", "getstarted/milvus_lite.md", "getstarted/quickstart.md"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / rel, root / rel)
    return root


@pytest.fixture(scope="module")
def settings(corpus: Path, embedder) -> Settings:
    base = corpus.parent
    s = Settings(
        milvus_uri=str(base / "served.db"),
        upload_dir=base / "uploads",
        ingest_roots=[corpus],
        max_tokens=16,
        temperature=0.0,
        top_k=3,
        max_upload_bytes=200_000,
        max_upload_files=5,
    )
    from askdocs import Index

    with Index(s, embedder=embedder) as ix:
        assert ix.ingest(corpus).added == 3
    return s


@pytest.fixture(scope="module")
def server(settings: Settings, embedder, local_llm) -> Iterator[Running]:
    app = create_app(settings, generator=local_llm, embedder=embedder)
    with Running(app, free_port()) as running:
        yield running


@pytest.fixture
def http(server: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture
def openai_client(server: Running):
    import openai

    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=120)


def sse(response: httpx.Response) -> list[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream body."""
    events, event, data = [], "message", []
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            events.append((event, "\n".join(data)))
            event, data = "message", []
    return events


def test_health_models_info(http: httpx.Client) -> None:
    assert http.get("/health").json()["status"] == "ok"
    models = http.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "askdocs"
    info = http.get("/api/info").json()
    assert info["documents"] == 3 and info["chunks"] > 10 and info["auth"] is False


def test_openai_sdk_non_streaming_carries_sources(openai_client, http: httpx.Client) -> None:
    r = openai_client.chat.completions.create(
        model="askdocs", messages=[{"role": "user", "content": QUESTION}], max_tokens=12
    )
    assert r.choices[0].message.content
    assert 0 < r.usage.completion_tokens <= 12 and r.usage.prompt_tokens > 50
    sources = r.model_extra["sources"]
    assert [s["n"] for s in sources] == [1, 2, 3]
    assert "reference/index.md" in {s["source"] for s in sources}
    # numbered best first, as /api/search ranks: [1] is its top hit
    ranked = http.post("/api/search", json={"query": QUESTION, "k": 3}).json()["results"]
    assert [(s["source"], s["text"]) for s in sources] == [(h["source"], h["text"]) for h in ranked]
    assert all({"n", "source", "section", "text", "score", "cited"} <= set(s) for s in sources)


def test_openai_sdk_streaming_ends_with_sources(openai_client) -> None:
    chunks = list(
        openai_client.chat.completions.create(
            model="askdocs", messages=[{"role": "user", "content": QUESTION}], max_tokens=12, stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1, "streamed in pieces"
    last = chunks[-1]
    assert last.choices[0].finish_reason in ("stop", "length")
    assert len(last.model_extra["sources"]) == 3 and last.usage.completion_tokens > 0


def test_chat_history_and_errors_are_json(http: httpx.Client) -> None:
    r = http.post(
        "/v1/chat/completions",
        json={
            "messages": [
                {"role": "system", "content": "ignored"},
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": "M and efConstruction [3]."},
                {"role": "user", "content": "and what about IVF?"},
            ],
            "max_tokens": 8,
        },
    )
    assert r.status_code == 200, r.text
    for body, status in [
        ({"messages": []}, 400),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, 400),
        ({"model": "no-such-collection", "messages": [{"role": "user", "content": "x"}]}, 404),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 9}, 400),
    ]:
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == status, (body, r.text)
        err = r.json()["error"]
        assert err["message"] and "Traceback" not in r.text


def test_rest_ask_streams_sources_tokens_done(http: httpx.Client) -> None:
    with http.stream("POST", "/api/ask", json={"question": QUESTION, "k": 2, "max_tokens": 12}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse(r)
    kinds = [e for e, _ in events]
    assert kinds[0] == "sources" and kinds[-1] == "done" and kinds.count("token") > 1
    sources = json.loads(events[0][1])
    assert len(sources["contexts"]) == 2
    done = json.loads(events[-1][1])
    assert done["answer"] == "".join(json.loads(d)["text"] for e, d in events if e == "token").strip()
    assert [c["n"] for c in done["contexts"]] == [1, 2]


def test_rest_search_documents(http: httpx.Client) -> None:
    r = http.post("/api/search", json={"query": "Milvus Lite local file", "k": 2, "mode": "bm25"})
    assert r.status_code == 200
    assert len(r.json()["results"]) == 2
    docs = http.get("/api/documents").json()["documents"]
    assert sorted(d["source"] for d in docs)[0] == "getstarted/milvus_lite.md"


def wait_job(http: httpx.Client, job: str) -> dict:
    for _ in range(600):
        j = http.get(f"/api/jobs/{job}").json()
        if j["state"] in ("done", "failed"):
            return j
        time.sleep(0.1)
    raise AssertionError("ingest job did not finish")


def test_upload_then_search_then_delete(http: httpx.Client) -> None:
    text = b"# Zorbulator\n\nThe zorbulator setting controls quantum flux capacitance in askdocs tests.\n"
    r = http.post("/api/ingest", files=[("files", ("zorb notes.md", text, "text/markdown"))])
    assert r.status_code == 202, r.text
    job = wait_job(http, r.json()["job"])
    assert job["state"] == "done" and job["files_done"] == 1 and job["chunks"] >= 1
    # the job went through the ingest's stages: its chunks embedded, then the flush (a torch-bf16 collection
    # would add `queries`, its question embedder's export; this server's float32 embedder, like the int8
    # default, embeds questions as it embedded the documents, so its ingest has no such stage)
    assert job["stage"] == "flush" and job["chunks_embedded"] == job["chunks_total"] == job["chunks"]
    hits = http.post("/api/search", json={"query": "zorbulator quantum flux", "k": 1}).json()["results"]
    assert hits[0]["source"] == "zorb notes.md"
    assert "zorb notes.md" in {d["source"] for d in http.get("/api/documents").json()["documents"]}
    r = http.delete("/api/documents/zorb%20notes.md")
    assert r.status_code == 200 and r.json()["chunks"] >= 1
    assert http.delete("/api/documents/zorb%20notes.md").status_code == 404
    hits = http.post("/api/search", json={"query": "zorbulator quantum flux", "k": 1}).json()["results"]
    assert hits[0]["source"] != "zorb notes.md"


def test_documents_of_the_same_name_from_two_folders(http: httpx.Client, corpus: Path) -> None:
    """A served folder's quickstart.md and an uploaded quickstart.md are two documents, named apart."""
    r = http.post("/api/ingest", json={"paths": [str(corpus / "getstarted")]})
    assert wait_job(http, r.json()["job"])["report"]["added"] == 2
    text = b"# Quickstart\n\nThe uploaded quickstart mentions the wombat installer.\n"
    r = http.post("/api/ingest", files=[("files", ("quickstart.md", text, "text/markdown"))])
    assert wait_job(http, r.json()["job"])["state"] == "done"
    docs = {d["source"]: d for d in http.get("/api/documents").json()["documents"]}
    assert {"docs/getstarted/quickstart.md", "uploads/quickstart.md", "getstarted/quickstart.md"} <= docs.keys()
    assert docs["uploads/quickstart.md"]["path"] == "quickstart.md"
    hits = http.post("/api/search", json={"query": "wombat installer", "k": 1, "mode": "bm25"}).json()["results"]
    assert hits[0]["source"] == "uploads/quickstart.md"
    r = http.delete("/api/documents/quickstart.md")
    assert r.status_code == 409 and "docs/getstarted/quickstart.md" in r.text and "uploads/quickstart.md" in r.text
    assert http.delete("/api/documents/uploads/quickstart.md").status_code == 200
    assert http.delete("/api/documents/quickstart.md").status_code == 200  # one left: its bare name is enough
    assert http.delete("/api/documents/milvus_lite.md").status_code == 200
    assert http.get("/api/info").json()["documents"] == 3


def test_one_bad_file_does_not_reject_the_upload(http: httpx.Client, tmp_path: Path) -> None:
    from office_files import make_docx

    docx = make_docx(tmp_path / "guide.docx").read_bytes()
    files = [
        ("files", ("tool.exe", b"MZ...", "application/octet-stream")),
        ("files", ("hnsw guide.docx", docx, "application/vnd.openxmlformats-officedocument.wordprocessingml.document")),
        ("files", ("too big.md", b"x" * 200_001, "text/markdown")),
    ]
    r = http.post("/api/ingest", files=files)
    assert r.status_code == 202, r.text
    refused = {f["path"]: f["reason"] for f in r.json()["rejected"]}
    assert refused.keys() == {"tool.exe", "too big.md"}
    assert "unsupported type .exe" in refused["tool.exe"] and "larger than" in refused["too big.md"]
    job = wait_job(http, r.json()["job"])
    assert job["state"] == "done" and job["files_done"] == 1 and job["report"]["added"] == 1
    assert [f["path"] for f in job["rejected"]] == ["tool.exe", "too big.md"]
    docs = {d["source"]: d for d in http.get("/api/documents").json()["documents"]}
    assert docs["hnsw guide.docx"]["title"] == "Vector Index Guide"
    query = "HNSW builds a layered proximity graph for approximate nearest neighbour search"
    hits = http.post("/api/search", json={"query": query, "k": 5}).json()["results"]
    assert "hnsw guide.docx" in [h["source"] for h in hits]
    assert http.delete("/api/documents/hnsw%20guide.docx").status_code == 200


@pytest.mark.parametrize(
    ("files", "status", "message"),
    [
        ([("files", ("tool.exe", b"MZ...", "application/octet-stream"))], 415, "unsupported type"),
        ([("files", ("a.md", b"x" * 200_001, "text/markdown"))], 413, "larger than"),
        ([("files", ("a.md", b"\x00\x01binary\x00", "text/markdown"))], 415, "binary"),
        ([("files", ("a.pdf", b"not a pdf", "application/pdf"))], 415, "not a PDF"),
        ([("files", ("a.md", b"# hi", "image/png"))], 415, "content type"),
        ([("files", (f"f{i}.md", b"# hi", "text/markdown")) for i in range(6)], 413, "too many files"),
        ([("files", ("../../etc/passwd.md", b"# ok", "text/markdown"))], 202, ""),
    ],
)
def test_upload_limits(http: httpx.Client, settings: Settings, files, status: int, message: str) -> None:
    r = http.post("/api/ingest", files=files)
    assert r.status_code == status, r.text
    if status != 202:
        assert message in r.json()["error"]["message"]
    else:  # the name is reduced to its last part, inside the upload folder
        wait_job(http, r.json()["job"])
        assert (settings.upload_dir / "passwd.md").is_file()
        http.delete("/api/documents/passwd.md")


def test_server_side_paths_stay_inside_the_roots(http: httpx.Client, corpus: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.md"
    outside.write_text("# secret\n\ntop secret text\n")
    link = corpus / "escape"
    link.mkdir(exist_ok=True)
    (link / "leak.md").symlink_to(outside)
    try:
        for paths in (["../secret.md"], [str(outside)], ["/etc"], ["escape"], [str(link / "leak.md")]):
            r = http.post("/api/ingest", json={"paths": paths})
            assert r.status_code == 403, (paths, r.text)
            assert str(tmp_path) not in r.text
        r = http.post("/api/ingest", json={"paths": ["reference"]})
        assert r.status_code == 202
        assert wait_job(http, r.json()["job"])["state"] == "done"
    finally:
        shutil.rmtree(link)


def test_concurrent_requests_are_batched(server: Running, openai_client) -> None:
    app_service = server.server.config.app.state.service
    before = len(app_service.batcher.batches)

    def one(i: int) -> str:
        r = openai_client.chat.completions.create(
            model="askdocs", messages=[{"role": "user", "content": f"{QUESTION} ({i})"}], max_tokens=8
        )
        return r.choices[0].message.content

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert all(answers)
    sizes = app_service.batcher.batches[before:]
    assert sum(sizes) == 8 and max(sizes) > 1, sizes


def test_metrics(http: httpx.Client) -> None:
    http.get("/health")
    text = http.get("/metrics").text
    assert 'askdocs_requests_total{method="GET",route="/health",status="200"}' in text
    assert "askdocs_stage_seconds_bucket" in text and 'stage="generate"' in text
    assert 'askdocs_tokens_total{kind="completion"}' in text


def test_api_key(settings: Settings, embedder, local_llm) -> None:
    keyed = settings.model_copy(update={"api_key": "s3cret-key"})
    app = create_app(keyed, generator=local_llm, embedder=embedder)
    with Running(app, free_port()) as running, httpx.Client(base_url=running.url, timeout=60) as c:
        assert c.get("/health").status_code == 200  # liveness stays open
        for path in ("/v1/models", "/api/documents", "/api/info", "/metrics"):
            assert c.get(path).status_code == 401
            assert c.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get(path, headers={"Authorization": "Bearer s3cret-key"}).status_code == 200
        r = c.post("/api/search", json={"query": "x"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert "s3cret" not in r.text
        import openai

        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{running.url}/v1", api_key="nope").models.list()
        ok = openai.OpenAI(base_url=f"{running.url}/v1", api_key="s3cret-key").models.list()
        assert ok.data[0].id == "askdocs"


def test_cors_off_by_default(http: httpx.Client) -> None:
    r = http.options("/api/search", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in r.headers


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def test_search_filters_are_structured_and_safe(http: httpx.Client) -> None:
    q = {"query": "Milvus Lite", "k": 10, "mode": "bm25"}
    only = [{"field": "source", "op": "prefix", "value": "getstarted/"}]
    r = http.post("/api/search", json={**q, "filters": only})
    assert r.status_code == 200 and r.json()["results"]
    assert {h["source"].split("/")[0] for h in r.json()["results"]} == {"getstarted"}
    hostile = [{"field": "source", "op": "==", "value": 'x" or source != "'}]
    assert http.post("/api/search", json={**q, "filters": hostile}).json()["results"] == []
    for bad in (
        [{"field": "source", "op": "==", "value": "x", "expr": "1==1"}],
        [{"field": "text", "op": "==", "value": "x"}],
        "source != ''",
    ):
        r = http.post("/api/search", json={**q, "filters": bad})
        assert r.status_code == 400 and r.json()["error"]["message"]


def test_errors_carry_their_status(settings: Settings, embedder, local_llm, tmp_path: Path) -> None:
    """A missing collection is 404 (it was 400), whichever API asks; an unreachable LLM is 503."""
    empty = settings.model_copy(update={"milvus_uri": str(tmp_path / "empty.db")})
    app = create_app(empty, generator=local_llm, embedder=embedder)
    with Running(app, free_port()) as running, httpx.Client(base_url=running.url, timeout=60) as c:
        for path, body in [
            ("/api/search", {"query": "x"}),
            ("/api/ask", {"question": "x"}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
        ]:
            r = c.post(path, json=body)
            assert r.status_code == 404, (path, r.text)
            assert r.json()["error"]["type"] == "not_found_error" and "askdocs ingest" in r.json()["error"]["message"]
        assert c.delete("/api/documents/nothing.md").status_code == 404
    from askdocs.errors import GeneratorUnavailableError
    from askdocs.generate.openai_api import OpenAIGenerator

    with pytest.raises(GeneratorUnavailableError, match="cannot reach the LLM server") as err:
        OpenAIGenerator(f"http://127.0.0.1:{free_port()}/v1", timeout=2)
    assert err.value.status == 503


# --------------------------------------------------------------------------- what OpenAI clients see


def _no_footer() -> dict:
    return {"askdocs": {"sources_footer": False}}


def test_sources_footer_in_the_content_streamed_or_not(openai_client) -> None:
    q = [{"role": "user", "content": QUESTION}]
    r = openai_client.chat.completions.create(model="askdocs", messages=q, max_tokens=12)
    content = r.choices[0].message.content
    answer, _, footer = content.partition("\n\nSources:\n")
    assert answer.strip() and footer, content
    by_n = {s["n"]: s for s in r.model_extra["sources"]}  # the structured field stays
    lines = footer.splitlines()
    for line in lines:
        n = int(line[1 : line.index("]")])
        s = by_n[n]
        assert line == f"[{n}] {s['source']}" + (f" › {s['section']}" if s["section"] else "")
    shown = [int(line[1 : line.index("]")]) for line in lines]
    assert shown == sorted(shown), "best first: [1] is the best passage"
    assert [by_n[n]["score"] for n in shown] == sorted((by_n[n]["score"] for n in shown), reverse=True)

    chunks = list(openai_client.chat.completions.create(model="askdocs", messages=q, max_tokens=12, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == content  # greedy decoding: the same answer, and the same footer as its last piece

    plain = openai_client.chat.completions.create(model="askdocs", messages=q, max_tokens=12, extra_body=_no_footer())
    assert plain.choices[0].message.content == answer and "Sources:" not in plain.choices[0].message.content


# Open WebUI's DEFAULT_TITLE_GENERATION_PROMPT_TEMPLATE (backend/open_webui/config.py), filled in as it sends it
OPEN_WEBUI_TITLE = """### Task:
Generate a concise, 3-5 word title with an emoji summarizing the chat history.
### Guidelines:
- The title should clearly represent the main theme or subject of the conversation.
- Use emojis that enhance understanding of the topic, but avoid quotation marks or special formatting.
- Write the title in the chat's primary language; default to English if multilingual.
- Prioritize accuracy over excessive creativity; keep it clear and simple.
### Output:
JSON format: { "title": "your concise title here" }
### Examples:
- { "title": "📉 Stock Market Trends" },
- { "title": "🍪 Perfect Chocolate Chip Recipe" }
### Chat History:
<chat_history>
USER: What do the parameters of HNSW mean?
ASSISTANT: M is the maximum degree of a node and efConstruction the search range while building [3].
</chat_history>"""

OPEN_WEBUI_FOLLOW_UPS = """### Task:
Suggest 3-5 relevant follow-up questions or prompts that the user might naturally ask next in this conversation \
as a **user**, based on the chat history, to help continue or deepen the discussion.
### Guidelines:
- Write all follow-up questions from the user's point of view, directed to the assistant.
### Output:
JSON format: { "follow_ups": ["Question 1?", "Question 2?", "Question 3?"] }
### Chat History:
<chat_history>
USER: What do the parameters of HNSW mean?
</chat_history>"""


def _searches(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith('askdocs_stage_seconds_count{stage="search"}'):
            return float(line.split()[-1])
    return 0.0


def test_open_webui_task_prompts_skip_retrieval(http: httpx.Client, openai_client) -> None:
    from askdocs.server.tasks import client_task

    assert client_task(OPEN_WEBUI_TITLE) == "title" and client_task(OPEN_WEBUI_FOLLOW_UPS) == "follow_ups"
    assert client_task(QUESTION) is None and client_task("### Task: no history here") is None
    before = _searches(http)
    r = openai_client.chat.completions.create(
        model="askdocs", messages=[{"role": "user", "content": OPEN_WEBUI_TITLE}], max_tokens=16
    )
    assert r.model_extra["askdocs_task"] == "title" and "sources" not in r.model_extra
    assert r.choices[0].message.content and "Sources:" not in r.choices[0].message.content
    chunks = list(
        openai_client.chat.completions.create(
            model="askdocs", messages=[{"role": "user", "content": OPEN_WEBUI_FOLLOW_UPS}], max_tokens=8, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert _searches(http) == before, "a task prompt must not search the documents"
    openai_client.chat.completions.create(model="askdocs", messages=[{"role": "user", "content": QUESTION}])
    assert _searches(http) == before + 1


def test_openai_compatibility_models_refusals_and_stop(openai_client) -> None:
    import openai

    assert openai_client.models.retrieve("askdocs").id == "askdocs"
    with pytest.raises(openai.NotFoundError, match="no collection 'nope'"):
        openai_client.models.retrieve("nope")
    q = [{"role": "user", "content": QUESTION}]
    for extra, why in [
        ({"n": 2}, "n=2 is not supported"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools are not supported"),
        ({"response_format": {"type": "json_object"}}, "response_format 'json_object' is not supported"),
    ]:
        with pytest.raises(openai.BadRequestError, match=why):
            openai_client.chat.completions.create(model="askdocs", messages=q, max_tokens=4, **extra)
    whole = openai_client.chat.completions.create(model="askdocs", messages=q, max_tokens=16, extra_body=_no_footer())
    text = whole.choices[0].message.content
    words = text.split()
    assert len(words) >= 4, text
    stop = words[len(words) // 2]
    expected = text[: text.index(stop)].strip()
    cut = openai_client.chat.completions.create(
        model="askdocs", messages=q, max_tokens=16, stop=[stop], extra_body=_no_footer()
    )
    assert cut.choices[0].message.content == expected and cut.choices[0].finish_reason == "stop"
    chunks = openai_client.chat.completions.create(
        model="askdocs", messages=q, max_tokens=16, stop=stop, stream=True, extra_body=_no_footer()
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == expected


def test_no_llm_backend_returns_the_passages_as_content(corpus: Path, embedder, tmp_path: Path) -> None:
    import openai

    from askdocs import Index
    from askdocs.generate.none import NoGenerator

    s = Settings(milvus_uri=str(tmp_path / "none.db"), top_k=2)
    with Index(s, embedder=embedder) as ix:
        ix.ingest(corpus / "reference")
    with Running(create_app(s, generator=NoGenerator(), embedder=embedder), free_port()) as running:
        client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", timeout=120)
        r = client.chat.completions.create(model="askdocs", messages=[{"role": "user", "content": QUESTION}])
    content = r.choices[0].message.content
    sources = r.model_extra["sources"]
    assert len(sources) == 2 and "Sources:" not in content
    best = max(sources, key=lambda x: x["score"])
    assert best["n"] == 1 and content.startswith(f"[1] {best['source']}")
    assert content.index("[1] ") < content.index("[2] ")
    assert all(x["text"].strip() in content for x in sources)


def test_search_refuses_filter_by_name_and_rest_bodies_are_documented(http: httpx.Client) -> None:
    r = http.post("/api/search", json={"query": "HNSW", "filter": 'source like "reference/%"'})
    assert r.status_code in (400, 422) and "'filter' (a Milvus expression) is not accepted" in r.text
    r = http.post(
        "/api/search", json={"query": "HNSW", "filters": [{"field": "source", "op": "prefix", "value": "getstarted/"}]}
    )
    assert r.status_code == 200 and {h["source"].split("/")[0] for h in r.json()["results"]} == {"getstarted"}
    spec = http.get("/openapi.json").json()
    body = spec["paths"]["/api/ingest"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    for path in ("/api/search", "/api/ask", "/v1/chat/completions"):
        assert "$ref" in str(spec["paths"][path]["post"]["requestBody"]), path
    assert {"stop", "n", "tools", "response_format"} <= set(spec["components"]["schemas"]["ChatRequest"]["properties"])
